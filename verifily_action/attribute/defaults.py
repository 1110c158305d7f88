"""Every default of `verifily attribute`, in one place: the CLI (which must not import numpy to start), the options
dataclass (`runner.AttributeOptions`) and the methods read them here; a test holds the config schema's `attribute`
defaults equal to them."""

K = 5  # knn-shapley: neighbours of the KNN classifier whose accuracy is valued
EXACT_UP_TO = 50_000  # knn-shapley: train rows valued exactly; beyond, each eval row's NEAREST nearest only
NEAREST = 2_000
RESAMPLES = 1_000  # bootstrap resamples of every interval
PROJECTION_DIM = 512  # tracin: length of each row's projected gradient
PROJECTION = "sketch"  # tracin: sketch (sparse CountSketch) or gaussian (dense)
JOBS = 1  # loo, segment-shapley: retrains at once
SEEDS = 1  # loo, segment-shapley: training seeds per coalition
BUDGET = 16  # loo, segment-shapley: the most retrains to start
