"""Fit your own k-means for unit tokenisation (another language, another feature model, or the MFCC backend).

Usage:
    # 500 centroids on mHuBERT-25Hz layer 11 features of 10 h sampled from a dataset
    python recipes/fit_kmeans.py --config recipes/slam/tokenize.yaml --dataset_name <audio dataset | folder> --kmeans_path km/my_km500.safetensors

    # offline: MFCC features
    python recipes/fit_kmeans.py --backend mfcc --dataset_name wavs/ --num_clusters 500 --kmeans_path km/mfcc500.safetensors

Mini-batch k-means in torch (on the GPU when there is one); the centroids are saved as safetensors, for
`recipes/tokenize_audio.py --kmeans_path`.
"""

from slam_recipes.errors import run_entry_point


def main() -> None:
    import logging

    from slam_recipes.configs import TokenizeArguments, parse_recipe_args

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (args,) = parse_recipe_args((TokenizeArguments,), None)  # before the heavy imports: --help answers at once

    from slam_recipes.audio.features import build_feature_extractor
    from slam_recipes.audio.kmeans import check_save_path, fit_kmeans, inertia, save_centroids
    from slam_recipes.audio.tokenizer import sample_features
    from slam_recipes.precision import default_device

    check_save_path(args.kmeans_path, overwrite=args.overwrite_kmeans)  # before minutes of extraction and fitting
    device = default_device(args.device)
    extractor = build_feature_extractor(
        args.backend, args.feature_model, args.layer, device=device, dtype=args.dtype,
        mfcc_frame_rate=args.mfcc_frame_rate, bf16_native_only=args.bf16_native_only,
    )  # fmt: skip

    # Data: a random sample of files (the first ones when streaming) up to sample_hours of audio
    frames, recordings = sample_features(
        args.dataset_name, extractor, hours=args.sample_hours, seed=args.seed, split=args.dataset_split,
        config_name=args.dataset_config, streaming=args.streaming, audio_columns=args.audio_columns,
        max_segment_seconds=args.max_segment_seconds,
    )  # fmt: skip
    print(f"{frames.shape[0]} frames of dimension {frames.shape[1]} from {recordings} recordings", flush=True)

    # Fit
    centroids = fit_kmeans(
        frames, args.num_clusters, batch_size=args.kmeans_batch_size, steps=args.kmeans_steps, seed=args.seed
    )
    save_centroids(args.kmeans_path, centroids)
    print(f"inertia {inertia(frames, centroids):.4f}; {args.num_clusters} centroids saved to {args.kmeans_path}")


if __name__ == "__main__":
    run_entry_point(main)
