"""Parts that artefact modules assemble: the efficiency tables' row builders (Tables 3-5, Figure 2c), their gFID
rows (Tables 3 and 4), and Figure 2's panels a and c. Artefact modules import parts and ``bench.catalogue``, never
each other."""
