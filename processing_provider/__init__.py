"""Processing provider ``deeplearningtools``: thin algorithms over ``dl_engine``."""
