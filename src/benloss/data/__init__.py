"""The data stage (rules in ``workflow/rules/data.smk``): the demo archive, downloads, archive readers, the
dataset sources, and ``prepare``, which writes the label table and the encoded arrays in one pass."""
