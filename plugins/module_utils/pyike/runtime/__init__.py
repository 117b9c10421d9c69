"""The I/O shell of the engine: TUN and routes (pyroute2), UDP/raw ESP sockets, the ESP packet
pump, and the daemon around them. Protocol logic lives in ``ike`` and ``esp``, never here.
"""
