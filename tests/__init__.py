"""debench tests (a regular package, so that `tests.*` never resolves to a site-packages `tests`)."""
