#![no_main]

// The confined filesystem (host/src/confined_fs) under arbitrary sequences of
// guest calls, from a fresh root beside an `outside` of sentinels, checked
// unchanged after each input. The property is stated once, in
// `runner_metrics::confined_fs::fuzzing::check_ops`, which the host's tests
// also replay on fixed inputs (`confined_fs::tests::fuzz_ops_never_touch_outside`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runner_metrics::confined_fs::fuzzing::check_ops(data);
});
