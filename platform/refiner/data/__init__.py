"""Task rows to tensors: tokenizers and padded batches."""
