"""Small tested blocks that models are composed of; each names its paper and equation."""
