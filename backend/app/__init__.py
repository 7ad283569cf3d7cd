"""The application: the spikeflash command line and the demos."""
