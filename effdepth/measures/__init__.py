"""The paper's measurements, one module per public function, each run through `effdepth.results.measure`
(per-item work, cached, then aggregated): `contributions`, `skip_effects` (and `local_effects`),
`logit_lens`, `residual_erasure`, `integrated_gradients`, `depth_score`, `linear_maps`.

The functions are imported from `effdepth` itself (`effdepth.contributions`, …); this package does
not re-export them, so `effdepth.measures.contributions` stays the module.
"""
