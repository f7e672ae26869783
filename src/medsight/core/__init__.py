"""The bottom layer: the image and case data model, atomic writes, the memory guard, hashing, table and JSON
helpers, and display windows and label colours. Nothing here imports another medsight package but ``errors``."""
