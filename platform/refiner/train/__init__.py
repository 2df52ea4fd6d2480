"""Train many: the orchestrator's train_step, the one training loop (fit.py), its optimizer, Grokfast, weight averaging and typed step metrics."""
