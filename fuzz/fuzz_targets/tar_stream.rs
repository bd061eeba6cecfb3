#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runner_metrics_fuzz::check_tar_stream(data);
});
