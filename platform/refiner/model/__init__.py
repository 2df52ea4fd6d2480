"""The refiner network (network.py, one file in nanoGPT's spirit) and what one refinement step uses: losses, canvas edits, the memory bank, puzzle embeddings."""
