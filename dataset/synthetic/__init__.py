"""A procedural world written out as a small CVUSA, CVACT and VIGOR, for demos and tests without the real data.

The files, each one thing:
- `world.py`: the frame (metres, map cells, UTM-like coordinates), the map's container, where cameras stand;
- `landscape.py`: the map painted: streets, land uses, buildings, trees, water, texture, shadows;
- `render.py`: the two views of a place, the north-up aerial crop and the ray-marched panorama;
- `cvusa.py`, `cvact.py`, `vigor.py`: one writer per layout; `vigor.py` also lays out its four cities;
- `generate.py`: the one call that writes them all; `plot.py`: a quick look; `cli.py`: the command line.

CVUSA and CVACT hold the same pairs, from one map: training locations from its western region, validation
locations from an eastern one, far enough apart that no validation image shares anything with a training one.
Locations are drawn at random with only `MIN_SPACING_M` between them, so nearby aerial crops overlap (hard
negatives; CVACT's 25 m rule matters). VIGOR's cities come from a second map. The same seed and arguments
give byte-identical files (the .mat header names the seed, not a date). The map takes about 0.12 MB per
location in memory; a few thousand pairs need well under 1 GB.

Run `python -m dataset.synthetic --out DIR --num_train N --num_val M --seed S [--sat_size H W]
[--grd_size H W] [--vigor_per_city P] [--plot PNG]`; `--real_sizes` writes the files at the size and in the
format of the benchmarks' own (CVUSA in its download's layout), for the loaders to resize as real data is.
"""

from dataset.synthetic.cli import main
from dataset.synthetic.generate import generate
from dataset.synthetic.plot import plot_pairs
from dataset.synthetic.vigor import generate_vigor

__all__ = ["generate", "generate_vigor", "main", "plot_pairs"]
