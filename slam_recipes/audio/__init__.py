"""Audio → units, and units → audio: feature extraction (`features`: HuBERT layers or MFCCs, at the model's frame
rate), k-means centroids (`kmeans`), the tokenizer that turns audio files into unit datasets (`tokenizer`) and the
unit vocoder (`vocoder`), and downloads of published checkpoints checked against their sha256 (`downloads`). Imports
only the base modules (`errors`, `precision`, `units`)."""
