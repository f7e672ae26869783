"""The training and inference engine shared by every task: the trainer and its loop, checkpoints, learning-rate
schedules, DDP, folds side by side, the sliding window, torch/onnx engines and the run folder layout."""
