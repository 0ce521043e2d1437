"""Unit datasets for training: loading any source (Hub, `save_to_disk` folder, files), normalising units to token
ids and mixing sources (`sources`), then packing rows and collating batches (`packing`). Imports only the base
modules (`configs`, `errors`, `units`)."""
