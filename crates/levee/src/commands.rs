//! The admin API's command-line clients (`levee keys`, `plans`, `costs`,
//! `budgets`, `queues`, `usage`): one HTTP call each through
//! [`client::AdminArgs`], printed as tab-separated lines. They never read
//! the server's files.

use crate::{client, KeysCommand, QueuesCommand};

fn print_key(k: &serde_json::Value) {
    println!(
        "{}\t{}\tplan={}\t{}\tprefix={}",
        k["id"].as_str().unwrap_or("?"),
        k["name"].as_str().unwrap_or(""),
        k["plan"].as_str().unwrap_or(""),
        if k["enabled"].as_bool().unwrap_or(false) {
            "enabled"
        } else {
            "disabled"
        },
        k["prefix"].as_str().unwrap_or("")
    );
}

pub(crate) async fn keys(command: KeysCommand, admin: client::AdminArgs) -> anyhow::Result<()> {
    use http::Method;
    let one = |id: &str, action: &str| format!("/admin/keys/{id}/{action}");
    let doc = match &command {
        KeysCommand::Create { plan, name } => {
            let body = serde_json::json!({ "name": name, "plan": plan });
            admin.call(Method::POST, "/admin/keys", Some(body)).await?
        }
        KeysCommand::List => admin.call(Method::GET, "/admin/keys", None).await?,
        KeysCommand::Get { id } => {
            admin
                .call(Method::GET, &format!("/admin/keys/{id}"), None)
                .await?
        }
        KeysCommand::Disable { id } => admin.call(Method::POST, &one(id, "disable"), None).await?,
        KeysCommand::Enable { id } => admin.call(Method::POST, &one(id, "enable"), None).await?,
        KeysCommand::Rotate { id } => admin.call(Method::POST, &one(id, "rotate"), None).await?,
        KeysCommand::Delete { id } => {
            admin
                .call(Method::DELETE, &format!("/admin/keys/{id}"), None)
                .await?;
            println!("deleted {id}");
            return Ok(());
        }
    };
    if let Some(list) = doc["keys"].as_array() {
        if list.is_empty() {
            println!("no keys (create one with `levee keys create --plan NAME`)");
            return Ok(());
        }
        println!("id\tname\tplan\tstate\tprefix");
        for k in list {
            print_key(k);
        }
        return Ok(());
    }
    print_key(&doc["key"]);
    if let Some(secret) = doc["secret"].as_str() {
        println!("secret: {secret}");
        println!("(shown once: store it now; send it as the x-api-key header)");
    }
    Ok(())
}

pub(crate) async fn plans(admin: client::AdminArgs) -> anyhow::Result<()> {
    let doc = admin.call(http::Method::GET, "/admin/plans", None).await?;
    for p in doc["plans"].as_array().into_iter().flatten() {
        println!("{}", serde_json::to_string(p)?);
    }
    Ok(())
}

pub(crate) async fn costs(
    admin: client::AdminArgs,
    by: String,
    period: String,
) -> anyhow::Result<()> {
    let path = format!("/admin/costs?by={by}&period={period}");
    let doc = admin.call(http::Method::GET, &path, None).await?;
    println!("{by}\trequests\tgb_seconds\tbytes_out\tusd");
    for row in doc["costs"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{:.3}\t{}\t{:.6}",
            row["name"].as_str().unwrap_or("?"),
            row["requests"],
            row["gb_seconds"].as_f64().unwrap_or(0.0),
            row["bytes_out"],
            row["usd"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

pub(crate) async fn queues_cli(
    command: QueuesCommand,
    admin: client::AdminArgs,
) -> anyhow::Result<()> {
    match command {
        QueuesCommand::List => {
            let doc = admin.call(http::Method::GET, "/admin/queues", None).await?;
            println!("queue\tvisible\tin_flight\tdelayed\turl");
            for q in doc["queues"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    q["name"].as_str().unwrap_or("?"),
                    q["approximate_messages"],
                    q["in_flight"],
                    q["delayed"],
                    q["url"].as_str().unwrap_or("")
                );
            }
        }
        QueuesCommand::Send { name, body } => {
            let path = format!("/admin/queues/{name}/messages");
            let doc = admin
                .call_raw(http::Method::POST, &path, body.into_bytes())
                .await?;
            println!("{}", doc["messageId"].as_str().unwrap_or("?"));
        }
        QueuesCommand::Peek { name, max } => {
            let path = format!("/admin/queues/{name}/peek?max={max}");
            let doc = admin.call(http::Method::GET, &path, None).await?;
            for m in doc["messages"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    m["message_id"].as_str().unwrap_or("?"),
                    m["body"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

pub(crate) async fn budgets(admin: client::AdminArgs) -> anyhow::Result<()> {
    let doc = admin
        .call(http::Method::GET, "/admin/budgets", None)
        .await?;
    println!("budget\tperiod\tlimit\tspent\tforecast\tstate\tresets_at");
    for b in doc["budgets"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{:.2}\t{:.4}\t{:.4}\t{}\t{}",
            b["name"].as_str().unwrap_or("?"),
            b["period"].as_str().unwrap_or("?"),
            b["limit"].as_f64().unwrap_or(0.0),
            b["spent"].as_f64().unwrap_or(0.0),
            b["forecast"].as_f64().unwrap_or(0.0),
            b["state"].as_str().unwrap_or("?"),
            b["resets_at_utc"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub(crate) async fn usage(
    admin: client::AdminArgs,
    key: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> anyhow::Result<()> {
    let mut query = Vec::new();
    for (k, v) in [("key", key), ("from", from), ("to", to)] {
        if let Some(v) = v {
            query.push(format!("{k}={v}"));
        }
    }
    let path = format!("/admin/usage?{}", query.join("&"));
    let doc = admin.call(http::Method::GET, &path, None).await?;
    println!("key\tday\tadmitted\tthrottled\tover_quota");
    for row in doc["usage"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            row["key_id"].as_str().unwrap_or("?"),
            row["day"].as_str().unwrap_or("?"),
            row["admitted"],
            row["throttled"],
            row["over_quota"]
        );
    }
    Ok(())
}
