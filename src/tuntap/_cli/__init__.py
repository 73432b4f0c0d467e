"""What the ``tuntap`` commands do; their arguments and help are in ``tuntap/__main__.py``.

One module per job: :mod:`.common` (errors and exit codes, colour, network namespaces,
attaching to an existing device), :mod:`.netinfo` (interface state, addresses, counters
and offloads read from rtnetlink and ethtool without attaching to the device),
:mod:`.devices` (``add``, ``del``, ``list``, ``show``), :mod:`.pcap` (pcap files),
:mod:`.capture` and :mod:`.replay`.
"""
