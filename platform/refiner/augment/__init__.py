"""The augmentation engine: ~300 augmented rows per task, deterministic and vectorised.

Strategy names are the seed's vocabulary. Input-only strategies perturb the input and
leave the target exact; label-consistent ones transform input and target together.
"""

INPUT_ONLY_STRATEGIES = ("token_noise", "position_shift", "masking")
LABEL_CONSISTENT_STRATEGIES = ("paraphrase", "format_variation")
STRATEGIES = INPUT_ONLY_STRATEGIES + LABEL_CONSISTENT_STRATEGIES
