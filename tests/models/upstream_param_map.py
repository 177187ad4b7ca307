"""Maps upstream's PyTorch state-dict keys (tests/models/upstream_params.txt) onto our variables.

Rule (DESIGN §4): drop the `netG.` / `warp.` prefix; `x.i` (a module and its nn.Sequential
index) becomes `x_i`, other dots separate submodules; `weight_orig` / multi-dimensional
`weight` → params `kernel` (OIHW → HWIO, transposed convs IOHW → HWIO, linear (out, in) →
(in, out)); 1-D `weight` → `scale`; `bias` → `bias`; `weight_u` → spectral `u`;
`running_mean` / `running_var` → batch_stats `mean` / `var`; `weight_v` and
`num_batches_tracked` have no counterpart.
"""

import pathlib
import re

import numpy as np

LISTING = pathlib.Path(__file__).with_name("upstream_params.txt")

# Upstream parameters that never receive a gradient and are not built here (UPSTREAM_NOTES §10).
DEAD = re.compile(r"^(img_(ref|ani)_embedding\.down_[1-4]\."
                  r"|netG\.comb_encoder\.ref_(img|label)_up_0\."
                  r"|netG\.up_[01]\.(bn_[01]_3\.|bn_s\.mlp_(gamma|beta)4\.))")

_TRANSPOSED_CONV = re.compile(r"label_embedding\.up_\d")


def read_listing(path=LISTING):
  """{section: {key: (shape tuple, 'param'|'buffer')}} for sections 'G', 'G concat', 'D'."""
  sections, current = {}, None
  for line in path.read_text().splitlines():
    if line.startswith("## G (SpadeCombineModule)"):
      current = sections.setdefault("G", {})
    elif line.startswith("## G differences"):
      current = sections.setdefault("G concat", {})
    elif line.startswith("## D"):
      current = sections.setdefault("D", {})
    elif line and not line.startswith("#") and current is not None:
      key, shape, kind = line.split("\t")
      current[key] = (() if shape == "scalar" else tuple(int(s) for s in shape.split("x")), kind)
  return sections


def our_variable(key, shape):
  """(collection, path tuple, our shape) for an upstream key, or None if it has no counterpart."""
  parts = key.split(".")
  leaf, modules = parts[-1], parts[:-1]
  if modules[0] in ("netG", "warp"):
    modules = modules[1:]
  path = []
  for m in modules:
    if m.isdigit():
      path[-1] += "_" + m
    else:
      path.append(m)
  if leaf in ("weight_v", "num_batches_tracked"):
    return None
  if leaf == "weight_u":
    return "spectral", tuple(path) + ("u",), shape
  if leaf in ("running_mean", "running_var"):
    return "batch_stats", tuple(path) + (leaf[len("running_"):],), shape
  if leaf == "bias":
    return "params", tuple(path) + ("bias",), shape
  if leaf in ("weight", "weight_orig") and len(shape) == 1:
    return "params", tuple(path) + ("scale",), shape
  if len(shape) == 4:
    order = (2, 3, 0, 1) if _TRANSPOSED_CONV.search(key) else (2, 3, 1, 0)
    shape = tuple(shape[i] for i in order)
  elif len(shape) == 2:
    shape = shape[::-1]
  return "params", tuple(path) + ("kernel",), shape


def flatten(variables):
  """{(collection, path tuple): shape} of a (possibly abstract) variables tree."""
  flat = {}

  def walk(collection, tree, prefix):
    for name, value in tree.items():
      if hasattr(value, "shape"):
        flat[(collection, prefix + (name,))] = tuple(value.shape)
      else:
        walk(collection, value, prefix + (name,))

  for collection, tree in variables.items():
    walk(collection, tree, ())
  return flat


def compare(listing, variables):
  """Matches every upstream entry against ours. Returns (mismatches, ours not in upstream,
  upstream live entries we lack, dead params we built); all empty when the trees agree."""
  ours = flatten(variables)
  matched, mismatched, missing, dead_built = set(), [], [], []
  for key, (shape, _) in listing.items():
    mapped = our_variable(key, shape)
    if mapped is None:
      continue
    collection, path, expected = mapped
    where = (collection, path)
    if DEAD.match(key):
      if where in ours:
        dead_built.append(key)
      continue
    if where not in ours:
      missing.append(key)
      continue
    matched.add(where)
    if ours[where] != expected:
      mismatched.append((key, expected, ours[where]))
  extra = sorted(set(ours) - matched)
  return mismatched, extra, missing, dead_built


def count(listing, include=lambda key: True):
  """Number of trainable upstream parameters among the keys `include` accepts."""
  return sum(int(np.prod(shape)) for key, (shape, kind) in listing.items()
             if kind == "param" and include(key))
