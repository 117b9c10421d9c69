"""One module per exchange concern of an IKE SA (strongSwan's task model): see ike/README.md."""
