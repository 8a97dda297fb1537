use std::fmt;

/// One thing wrong with the configuration, anchored where the operator can find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the offending key, when the file pins it down.
    pub line: Option<usize>,
    /// Key path such as `functions.hello.timeout` or `routes[1].function`; empty
    /// when the problem concerns the file as a whole (unreadable, bad syntax).
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with one configuration file, reported together so a single
/// edit pass can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    origin: String,
    problems: Vec<Problem>,
}

impl ConfigError {
    pub(crate) fn new(origin: &str, problems: Vec<Problem>) -> Self {
        Self {
            origin: origin.to_owned(),
            problems,
        }
    }

    /// The file name the problems refer to.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Never empty.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }
}

impl fmt::Display for ConfigError {
    /// One `{origin}:{line}: {key}: {message}` line per problem, the format
    /// editors and terminals turn into clickable locations.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&self.origin)?;
            if let Some(line) = problem.line {
                write!(f, ":{line}")?;
            }
            f.write_str(": ")?;
            if !problem.key.is_empty() {
                write!(f, "{}: ", problem.key)?;
            }
            f.write_str(&problem.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(line: Option<usize>, key: &str) -> Problem {
        Problem {
            line,
            key: key.to_owned(),
            message: "bad".to_owned(),
        }
    }

    #[test]
    fn display_prints_one_line_per_problem() {
        let err = ConfigError::new(
            "levee.toml",
            vec![
                problem(Some(3), "functions.hello.timeout"),
                problem(None, "account.concurrency"),
                problem(Some(1), ""),
            ],
        );
        assert_eq!(
            err.to_string(),
            "levee.toml:3: functions.hello.timeout: bad\n\
             levee.toml: account.concurrency: bad\n\
             levee.toml:1: bad"
        );
        assert_eq!(err.origin(), "levee.toml");
        assert_eq!(err.problems().len(), 3);
    }

    #[test]
    fn problem_display_names_line_and_key() {
        assert_eq!(
            problem(Some(7), "routes[0].route").to_string(),
            "line 7: routes[0].route: bad"
        );
        assert_eq!(problem(None, "").to_string(), "bad");
    }
}
