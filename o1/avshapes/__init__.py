"""AV-Shapes, o1's built-in dataset: its world, generator and measurements."""
