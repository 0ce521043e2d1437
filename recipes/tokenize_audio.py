"""Turn audio into speech units: HuBERT-family features at one layer (or offline MFCCs) → nearest k-means centroid
→ consecutive repeats removed. The output folder is a units dataset the pretraining, DPO and evaluation recipes read.

Usage:
    # the paper's tokeniser: mHuBERT-25Hz layer 11 + textlesslib's k-means 500, on every GPU of the machine
    accelerate launch recipes/tokenize_audio.py --config recipes/slam/tokenize.yaml --dataset_name <Hub audio dataset | folder of audio files> --output_dir data/units/librispeech

    # fully offline, MFCC features and a k-means fitted with recipes/fit_kmeans.py
    python recipes/tokenize_audio.py --backend mfcc --kmeans_path km/mfcc500.safetensors --dataset_name wavs/ --output_dir data/units/wavs

A file longer than max_segment_seconds (60 s) is cut at silences found by silero-vad (or into overlapping windows,
`--segmentation fixed`): one output row per segment, with its `start` / `end` seconds in the file. A rerun with the
same settings skips finished shards. Unreadable or empty audio, audio shorter than the feature model's receptive
field (400 samples, 25 ms, for HuBERT base), and long audio with no speech found are skipped and listed in
<output_dir>/tokenize_report.jsonl.
"""

from slam_recipes.errors import run_entry_point


def main() -> None:
    import json
    import logging
    import os

    from slam_recipes.configs import TokenizeArguments, parse_recipe_args
    from slam_recipes.errors import ConfigError

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (args,) = parse_recipe_args((TokenizeArguments,))  # before the heavy imports: --help answers at once

    import torch
    from accelerate import PartialState

    from slam_recipes.audio.kmeans import load_centroids
    from slam_recipes.audio.tokenizer import (
        CONFIG_FILE,
        build_audio_tokenizer,
        build_segmenter,
        check_run_settings,
        clear_run,
        open_audio_source,
        tokenize_audio,
        write_report,
    )
    from slam_recipes.files import atomic_write
    from slam_recipes.precision import default_device

    if not args.output_dir:
        raise ConfigError("output_dir is required")
    state = PartialState(cpu=not torch.cuda.is_available())  # CPU processes (torchrun) share the work over gloo
    device = default_device(args.device) if args.device else str(state.device)
    stale = check_run_settings(args.output_dir, args.settings(), overwrite=args.overwrite_output_dir)

    # Model: features and centroids, checked against each other before any audio is read
    with state.main_process_first():  # the main process converts a pickled k-means once
        centroids = load_centroids(args.kmeans_path, allow_pickle=args.allow_pickle_kmeans)
    extractor, assigner = build_audio_tokenizer(args, device, args.dtype, centroids)
    segmenter = build_segmenter(args, extractor)  # its settings are checked before anything is written
    opened = open_audio_source(  # and the source: a wrong path or column writes nothing
        args.dataset_name,
        split=args.dataset_split,
        config_name=args.dataset_config,
        streaming=args.streaming,
        audio_columns=args.audio_columns,
    )
    if state.is_main_process:
        if stale:  # overwrite_output_dir over a run with other settings: its shards must not be kept
            clear_run(args.output_dir)
        os.makedirs(args.output_dir, exist_ok=True)
        with atomic_write(os.path.join(args.output_dir, CONFIG_FILE)) as f:
            json.dump({**args.settings(), "num_units": assigner.num_units}, f, indent=2)
    state.wait_for_everyone()

    # Tokenisation: this process's shards
    summary = tokenize_audio(
        args.dataset_name,
        args.output_dir,
        extractor,
        assigner,
        split=args.dataset_split,
        config_name=args.dataset_config,
        streaming=args.streaming,
        audio_columns=args.audio_columns,
        shard_size=args.shard_size,
        dedup=args.dedup,
        keep_durations=args.keep_durations,
        max_batch_seconds=args.max_batch_seconds,
        segmenter=segmenter,
        process_index=state.process_index,
        num_processes=state.num_processes,
        opened=opened,
    )
    print(
        f"process {state.process_index}: {summary['shards_written']} shards written, {summary['shards_skipped']} "
        f"already done; {summary['files']} files ({summary['rows']} rows), {summary['audio_seconds'] / 3600:.3f} h "
        f"of audio in {summary['seconds']:.1f} s ({summary['audio_seconds'] / max(summary['seconds'], 1e-9):.1f} "
        f"audio-s/s); {summary['skipped_files']} skipped",
        flush=True,
    )
    state.wait_for_everyone()
    if state.is_main_process:
        skipped = write_report(args.output_dir, args.dataset_name)
        print(f"Units dataset: {args.output_dir} ({len(skipped)} files skipped, listed in tokenize_report.jsonl)")


if __name__ == "__main__":
    run_entry_point(main)
