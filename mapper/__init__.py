"""mapper: turns a layer graph into a chip configuration.

It will hold chip specs as data, graph extraction from torch models, legalization,
constraint checks, memory-aware core allocation, quantization, and the JSON-serialisable
``ChipConfig`` with its fit report. It imports snnlib, never backend.
"""
