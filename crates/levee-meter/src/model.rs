//! The meter's view of `[prices]` and `[budgets.NAME]`: the config's own
//! types, validated once at load. Consumers still tolerate nonsense (NaN,
//! negative) without panicking, since budgets can be built in code too.

pub use levee_config::{Budget, BudgetAction, BudgetPeriod, BudgetScope, Prices};
