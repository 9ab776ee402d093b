"""Data sets vlkit makes itself: the procedurally drawn shapes world (`vlkit.data.shapes`)."""
