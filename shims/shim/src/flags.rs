//! Command-line flags as containerd passes them: Go-style single-dash flags
//! (`-namespace ns`, `-namespace=ns`, `--debug`), then the action (`start`, `delete`).

#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub publish_binary: String,
    pub bundle: String,
    pub debug: bool,
    pub version: bool,
    pub action: Option<String>,
}

impl Flags {
    pub fn parse(args: &[String]) -> Result<Flags, String> {
        let mut flags = Flags { namespace: "default".into(), ..Flags::default() };
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let Some(name) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                if flags.action.is_some() {
                    return Err(format!("unexpected argument {arg:?}"));
                }
                flags.action = Some(arg.clone());
                continue;
            };
            let (name, inline) = match name.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (name, None),
            };
            if flags.set_bool(name, inline.as_deref())? {
                continue;
            }
            let value = match inline {
                Some(value) => value,
                None => rest.next().cloned().ok_or_else(|| format!("flag -{name} needs a value"))?,
            };
            flags.set_value(name, value)?;
        }
        Ok(flags)
    }

    fn set_bool(&mut self, name: &str, value: Option<&str>) -> Result<bool, String> {
        let slot = match name {
            "debug" => &mut self.debug,
            "v" | "version" => &mut self.version,
            _ => return Ok(false),
        };
        *slot = match value {
            None | Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            Some(other) => return Err(format!("flag -{name}: invalid boolean {other:?}")),
        };
        Ok(true)
    }

    fn set_value(&mut self, name: &str, value: String) -> Result<(), String> {
        let slot = match name {
            "namespace" => &mut self.namespace,
            "id" => &mut self.id,
            "address" => &mut self.address,
            "publish-binary" => &mut self.publish_binary,
            "bundle" => &mut self.bundle,
            // Accepted for compatibility, not used.
            "socket" | "runtime-root" | "criu" | "systemd-cgroup" => return Ok(()),
            other => return Err(format!("unknown flag -{other}")),
        };
        *slot = value;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Flags {
        Flags::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn containerd_start_command_line() {
        let flags = parse(&["-namespace", "k8s", "-address", "/run/c.sock", "-publish-binary", "/bin/c", "-id", "abc", "-debug", "start"]);
        assert_eq!(flags.namespace, "k8s");
        assert_eq!(flags.address, "/run/c.sock");
        assert_eq!(flags.publish_binary, "/bin/c");
        assert_eq!(flags.id, "abc");
        assert!(flags.debug);
        assert_eq!(flags.action.as_deref(), Some("start"));
    }

    #[test]
    fn equals_and_double_dash_forms() {
        let flags = parse(&["--id=x", "-bundle=/b", "-debug=false", "delete"]);
        assert_eq!(flags.id, "x");
        assert_eq!(flags.bundle, "/b");
        assert!(!flags.debug);
        assert_eq!(flags.namespace, "default");
    }

    #[test]
    fn unknown_flag_and_missing_value_are_errors() {
        assert!(Flags::parse(&["-nope".to_string(), "x".to_string()]).is_err());
        assert!(Flags::parse(&["-id".to_string()]).is_err());
    }
}
