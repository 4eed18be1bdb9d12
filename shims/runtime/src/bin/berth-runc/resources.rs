//! `update`'s input: linux.resources from a JSON file or stdin, or from flags with
//! human-readable sizes (`512m`, `1g`).

use std::io::Read;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::cli::UpdateArgs;

pub fn from_args(args: &UpdateArgs) -> Result<LinuxResources, String> {
    if let Some(path) = &args.resources {
        return read_json(path);
    }
    let mut resources = LinuxResources::default();
    let mut memory = LinuxMemory::default();
    memory
        .set_limit(args.memory.as_deref().map(parse_size).transpose()?)
        .set_reservation(args.memory_reservation.as_deref().map(parse_size).transpose()?)
        .set_swap(args.memory_swap.as_deref().map(parse_size).transpose()?)
        .set_kernel(args.kernel_memory.as_deref().map(parse_size).transpose()?);
    if memory != LinuxMemory::default() {
        resources.set_memory(Some(memory));
    }
    let cpu = LinuxCpu::default()
        .set_shares(args.cpu_shares).clone()
        .set_period(args.cpu_period).clone()
        .set_quota(args.cpu_quota).clone()
        .set_realtime_period(args.cpu_rt_period).clone()
        .set_realtime_runtime(args.cpu_rt_runtime).clone()
        .set_cpus(args.cpuset_cpus.clone()).clone()
        .set_mems(args.cpuset_mems.clone()).clone();
    if cpu != LinuxCpu::default() {
        resources.set_cpu(Some(cpu));
    }
    if let Some(limit) = args.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }
    if let Some(weight) = args.blkio_weight {
        resources.set_block_io(Some(LinuxBlockIo::default().set_weight(Some(weight)).clone()));
    }
    Ok(resources)
}

fn read_json(path: &std::path::Path) -> Result<LinuxResources, String> {
    let mut text = String::new();
    let result = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    result.map_err(|e| format!("reading resources from {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("resources {}: invalid JSON: {e}", path.display()))
}

/// Parses `1024`, `512k`, `512m`, `1g` (binary units, case-insensitive, optional `b`);
/// `-1` means unlimited.
pub fn parse_size(text: &str) -> Result<i64, String> {
    let lower = text.trim().to_ascii_lowercase();
    if lower == "-1" {
        return Ok(-1);
    }
    let digits_end = lower.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits_end);
    let multiplier: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        _ => return Err(format!("invalid size {text:?}")),
    };
    let value: f64 = number.parse().map_err(|_| format!("invalid size {text:?}"))?;
    Ok((value * multiplier) as i64)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("2kb").unwrap(), 2048);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("12x").is_err());
    }
}
