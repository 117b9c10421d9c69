"""IKEv2 state machines (RFC 7296), sans-I/O: datagrams and time in, datagrams and events out."""
