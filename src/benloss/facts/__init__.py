"""The study's facts, torch-free: bands, class nomenclature, official lists, the paper's numbers, the losses."""
