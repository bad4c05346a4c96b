"""Image loading, the preprocessing contract, and the synthetic labelled dataset."""
