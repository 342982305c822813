"""Loss landscapes and training trajectories (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"): the
training loss, sample F1 and macro mAP over planes through a trained model's weights, the trajectory of its training
in the plane of its first two principal components, and measured convexity and sharpness."""
