"""Hardware against simulation: the bit-exact comparison and its first-divergence report."""
