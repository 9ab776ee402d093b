"""Data sets vlkit makes itself: the procedurally drawn shapes world (`vlkit.data.shapes`) and the
simulated screening set of painted spots on real fundus photographs, with imaging-modality
questions over real CT, MRI, ultrasound and pathology images (`vlkit.data.lesions`)."""
