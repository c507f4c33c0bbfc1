//! What every module's settings are made of: a [`Variable`] (name, documented default,
//! meaning) declared once by the module that reads it, the [`Source`] it is read from (the
//! environment over the TOML file `BQB_CONFIG_FILE` names), a [`Reader`] that reads a module's
//! variables through their `Variable` and collects every [`Problem`], and [`Secret`] for values
//! that must never be logged.
//!
//! Depends on nothing of this crate: modules at every layer declare their settings with it, and
//! `config` above them all aggregates them into `Settings`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Environment variables with this prefix belong to the test harness, not to the binary.
pub(crate) const TEST_PREFIX: &str = "BQB_TEST_";
/// Variables a command reads for its flags (`bq-backup worker`'s clap `env`, and the shard count
/// of a Kubernetes Indexed Job): accepted in the environment, not settings.
pub const COMMAND_VARIABLES: &[&str] = &[
    "BQB_REPOSITORY",
    "BQB_BACKUP_ID",
    "BQB_RESTORE_JOB",
    "BQB_SHARDS",
];
/// Every other variable with this prefix must be a known setting.
const PREFIX: &str = "BQB_";

/// The one variable of this module: where the optional file is. Env only (a file cannot name
/// another file).
pub(crate) static CONFIG_FILE: Variable = Variable {
    name: "BQB_CONFIG_FILE",
    default: "(none)",
    doc: "Optional TOML file holding any of these settings by their file key (env name in lower case without `BQB_`, e.g. `port`, `bigquery_endpoint`). The environment wins over the file. Env only.",
};

/// One environment variable: its name, its default as the table shows it, and what it does.
/// Declared as a `static` by the module that reads it (a `static`, so that it has one address a
/// test can check the registry by), and read only through a `Reader`.
#[derive(Debug)]
pub struct Variable {
    pub name: &'static str,
    /// The default in force when unset: a value (`8080`, which setting the variable to gives
    /// the same settings), or, in parentheses or as `$VAR`, what being unset means.
    pub default: &'static str,
    /// One Markdown paragraph, without `|` (it is a table cell).
    pub doc: &'static str,
}

impl Variable {
    /// The key in the TOML file: the name in lower case without the `BQB_` prefix. `None` for
    /// `BQB_CONFIG_FILE`, which only the environment can set.
    pub fn file_key(&self) -> Option<String> {
        (self.name != CONFIG_FILE.name).then(|| {
            self.name
                .strip_prefix(PREFIX)
                .unwrap_or(self.name)
                .to_ascii_lowercase()
        })
    }
}

/// One thing wrong with the configuration, naming its variable (or the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem(pub(crate) String);

impl Problem {
    pub(crate) fn new(variable: &Variable, message: impl fmt::Display) -> Self {
        Self::about(variable.name, message)
    }

    /// A problem about something that is not one variable (a file, a group of variables).
    pub(crate) fn about(subject: impl fmt::Display, message: impl fmt::Display) -> Self {
        Self(format!("{subject}: {message}"))
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value that must never reach a log: `Debug` prints `"***"`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Where settings come from: the registered variables of the environment over those of the
/// file `BQB_CONFIG_FILE` names.
pub(crate) struct Source {
    /// Registered variables' values by name (the file's, then the environment's on top).
    values: BTreeMap<&'static str, String>,
    /// The whole environment, for the platform's own variables a default may come from.
    env: BTreeMap<String, String>,
    /// Whether the environment held a `BQB_` variable nobody declares (then the known names are
    /// listed, after every other problem).
    pub(crate) unknown: bool,
    /// Every variable read, so a test can prove the registry and the modules' readers agree.
    #[cfg(test)]
    pub(crate) read: std::cell::RefCell<Vec<&'static Variable>>,
}

impl Source {
    /// The source for this environment, and what is wrong with it already: an unreadable file,
    /// unknown keys in it, unknown `BQB_` variables.
    pub(crate) fn new(
        env: BTreeMap<String, String>,
        registry: &'static [&'static Variable],
    ) -> (Self, Vec<Problem>) {
        let registered = |name: &str| registry.iter().copied().find(|v| v.name == name);
        let mut problems = Vec::new();
        let mut values = BTreeMap::new();
        if let Some(path) = env.get(CONFIG_FILE.name).filter(|p| !p.is_empty()) {
            match read_file(&PathBuf::from(path), registry) {
                Ok(from_file) => values.extend(from_file),
                Err(p) => problems.extend(p),
            }
        }
        let mut unknown = false;
        for (name, value) in &env {
            if let Some(variable) = registered(name) {
                if variable.file_key().is_some() {
                    values.insert(variable.name, value.clone());
                }
            } else if name.starts_with(PREFIX)
                && !name.starts_with(TEST_PREFIX)
                && !COMMAND_VARIABLES.contains(&name.as_str())
            {
                problems.push(Problem::about(name, "unknown setting"));
                unknown = true;
            }
        }
        let source = Self {
            values,
            env,
            unknown,
            #[cfg(test)]
            read: std::cell::RefCell::new(vec![&CONFIG_FILE]),
        };
        (source, problems)
    }

    /// The value of a registered variable, `None` when unset or blank.
    fn get(&self, variable: &'static Variable) -> Option<&str> {
        #[cfg(test)]
        self.read.borrow_mut().push(variable);
        self.values
            .get(variable.name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A variable of the platform, not ours, that a default falls back to
    /// (`GOOGLE_CLOUD_PROJECT`). Blank = unset.
    pub(crate) fn platform(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// Reads a TOML config file into registered variables' values, rejecting unknown keys.
fn read_file(
    path: &PathBuf,
    registry: &[&'static Variable],
) -> Result<BTreeMap<&'static str, String>, Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![Problem::new(
            &CONFIG_FILE,
            format!("cannot read {}: {e}", path.display()),
        )]
    })?;
    let table: toml::Table = text.parse().map_err(|e| {
        vec![Problem::new(
            &CONFIG_FILE,
            format!("{} is not valid TOML: {e}", path.display()),
        )]
    })?;
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in table {
        let Some(variable) = registry
            .iter()
            .find(|v| v.file_key().as_deref() == Some(key.as_str()))
        else {
            problems.push(Problem::about(
                path.display(),
                format!("unknown setting `{key}`"),
            ));
            continue;
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                problems.push(Problem::about(
                    path.display(),
                    format!(
                        "`{key}` must be a string, integer or boolean, got {}",
                        other.type_str()
                    ),
                ));
                continue;
            }
        };
        values.insert(variable.name, text);
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

/// Reads one module's variables from a [`Source`], each through its [`Variable`], collecting
/// every problem instead of stopping at the first. A bad value yields the default, so that
/// reading goes on and every problem is found.
pub(crate) struct Reader<'a> {
    source: &'a Source,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(source: &'a Source) -> Self {
        Self {
            source,
            problems: Vec::new(),
        }
    }

    /// The value as given (untrimmed), `None` when unset or blank.
    pub(crate) fn text(&self, variable: &'static Variable) -> Option<&'a str> {
        self.source.get(variable)
    }

    /// The platform variable `name` (see [`Source::platform`]), as given.
    pub(crate) fn platform(&self, name: &str) -> Option<&'a str> {
        self.source.platform(name)
    }

    pub(crate) fn problem(&mut self, variable: &Variable, message: impl fmt::Display) {
        self.problems.push(Problem::new(variable, message));
    }

    /// A problem about a group of variables rather than one.
    pub(crate) fn problem_about(&mut self, subject: &str, message: impl fmt::Display) {
        self.problems.push(Problem::about(subject, message));
    }

    /// The value parsed, `None` when unset.
    pub(crate) fn optional<T: FromStr>(&mut self, variable: &'static Variable) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        let v = self.text(variable)?;
        v.trim()
            .parse()
            .map_err(|e| self.problem(variable, format!("`{v}` is not valid: {e}")))
            .ok()
    }

    /// The value parsed, `default` when unset (or bad).
    pub(crate) fn parsed<T: FromStr>(&mut self, variable: &'static Variable, default: T) -> T
    where
        T::Err: fmt::Display,
    {
        self.optional(variable).unwrap_or(default)
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`); unset = `false`.
    pub(crate) fn flag(&mut self, variable: &'static Variable) -> bool {
        let Some(v) = self.text(variable).map(|v| v.trim().to_ascii_lowercase()) else {
            return false;
        };
        match v.as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => {
                self.problem(variable, format!("`{v}` is not a boolean (true/false)"));
                false
            }
        }
    }

    /// A count of at least 1, `default` when unset (or bad).
    pub(crate) fn positive(&mut self, variable: &'static Variable, default: usize) -> usize {
        let v = self.parsed(variable, default);
        if v == 0 {
            self.problem(variable, "must be at least 1");
            return default;
        }
        v
    }

    /// An optional count of at least 1 (unset or bad = `None`).
    pub(crate) fn optional_positive(&mut self, variable: &'static Variable) -> Option<u32> {
        let v: u32 = self.optional(variable)?;
        if v == 0 {
            self.problem(variable, "must be at least 1");
            return None;
        }
        Some(v)
    }

    /// A comma-separated list (blank items dropped); `default` is a list in the same form.
    pub(crate) fn list(&self, variable: &'static Variable, default: &str) -> Vec<String> {
        self.text(variable)
            .unwrap_or(default)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// An http(s) URL without a trailing `/`, `default` when unset (or bad).
    pub(crate) fn endpoint(&mut self, variable: &'static Variable, default: &str) -> String {
        let v = self
            .text(variable)
            .unwrap_or(default)
            .trim()
            .trim_end_matches('/')
            .to_string();
        match url::Url::parse(&v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => v,
            _ => {
                self.problem(variable, format!("`{v}` is not an http(s) URL"));
                default.to_string()
            }
        }
    }

    /// `value` when nothing was wrong, else every problem found.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, Vec<Problem>> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self.problems)
        }
    }
}

/// Reads `pairs` (as an environment, any `BQB_` name accepted) with one module's `from_source`;
/// the error is every problem, one per line. For the modules' own tests.
#[cfg(test)]
pub(crate) fn read_pairs<T>(
    pairs: &[(&str, &str)],
    from_source: impl Fn(&Source) -> Result<T, Vec<Problem>>,
) -> Result<T, String> {
    let env: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // Every name given is registered for this read (leaked: a test's few names).
    let registry: Vec<&'static Variable> = pairs
        .iter()
        .map(|(name, _)| {
            &*Box::leak(Box::new(Variable {
                name: Box::leak(name.to_string().into_boxed_str()),
                default: "",
                doc: "",
            }))
        })
        .collect();
    let (source, problems) = Source::new(env, Box::leak(registry.into_boxed_slice()));
    let read = from_source(&source);
    let mut all: Vec<String> = problems.iter().map(ToString::to_string).collect();
    match read {
        Ok(value) if all.is_empty() => Ok(value),
        Ok(_) => Err(all.join("\n")),
        Err(p) => {
            all.extend(p.iter().map(ToString::to_string));
            Err(all.join("\n"))
        }
    }
}
