//! napi-rs's link setup for a Node addon (symbols resolved by the node
//! process that loads it).
fn main() {
    napi_build::setup();
}
