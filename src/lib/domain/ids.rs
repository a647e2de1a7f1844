/// A new opaque, time-ordered id with a readable prefix, e.g. `cv_0192…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}
