"""The ground floor: errors, path helpers, the documented feature keys, the TFRecord framing and variable
tracking that every other package uses. Nothing here imports another package of this repository."""
