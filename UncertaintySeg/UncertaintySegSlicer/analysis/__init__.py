"""The Analysis section in the scene: feature maps, uncertainty ranking, annotator agreement."""
