"""Cases from scanner files: DICOM series (:mod:`.dicom`), registration and 1 mm grids (:mod:`.registration`),
brain extraction (:mod:`.brain`), and the whole preparation of a study as a BraTS-like case (:mod:`.prepare`),
with its command line (:mod:`.cli`). SimpleITK and deepbet come with the ``clinical`` extra (:mod:`.errors`).
"""
