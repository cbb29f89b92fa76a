//! What a backend (or a shell script) does with a running server: `sockhub publish` calls the
//! HTTP API; `sockhub token` mints client tokens.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sockhub::auth::{unix_now, Claims, TokenSecret};

/// Flags of `sockhub publish`.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The server's HTTP address.
    #[arg(
        long,
        env = "SOCKHUB_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// The server's API key (sent as `Authorization: Bearer KEY`).
    #[arg(
        long,
        env = "SOCKHUB_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// Channel to publish to; repeat for several.
    #[arg(long = "channel", short = 'c', value_name = "NAME", required = true)]
    channels: Vec<String>,
    /// Send the message as binary (the bytes of TEXT, or of stdin).
    #[arg(long)]
    binary: bool,
    /// Time allowed for the request, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// The message. `-` or nothing: read it from stdin.
    #[arg(value_name = "TEXT")]
    text: Option<String>,
}

/// Flags of `sockhub token`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The server's token secret (`sockhub serve --token-secret`).
    #[arg(
        long,
        env = "SOCKHUB_TOKEN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    secret: String,
    /// The user id the token proves.
    #[arg(long, value_name = "ID")]
    user: String,
    /// A channel pattern the holder may join and publish to (`lobby`, `room-*`, `*`); repeat
    /// for several. [default: none]
    #[arg(long = "channel", value_name = "PATTERN")]
    channels: Vec<String>,
    /// How long the token is valid (e.g. `1h`, `30m`, `3600`).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = sockhub::config::parse_duration)]
    ttl: Duration,
}

/// `sockhub token`: prints a signed token.
pub fn token(args: TokenArgs) -> ExitCode {
    if args.secret.is_empty() {
        eprintln!("sockhub token: --secret must not be empty");
        return ExitCode::from(2);
    }
    let now = unix_now();
    let mut claims = Claims::new(args.user, now + args.ttl.as_secs().max(1), args.channels);
    claims.iat = Some(now);
    println!("{}", TokenSecret::new(args.secret).mint(&claims));
    ExitCode::SUCCESS
}

/// `sockhub publish`: one `POST /api/publish`, prints the server's answer.
pub fn publish(args: PublishArgs) -> ExitCode {
    let payload = match args.text.as_deref() {
        Some(t) if t != "-" => t.as_bytes().to_vec(),
        _ => {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                eprintln!("sockhub publish: reading stdin: {e}");
                return ExitCode::FAILURE;
            }
            buf
        }
    };
    let mut body = serde_json::Map::new();
    if args.channels.len() == 1 {
        body.insert("channel".into(), args.channels[0].clone().into());
    } else {
        body.insert("channels".into(), args.channels.clone().into());
    }
    if args.binary {
        body.insert(
            "data_base64".into(),
            base64::engine::general_purpose::STANDARD
                .encode(&payload)
                .into(),
        );
    } else {
        match String::from_utf8(payload) {
            Ok(text) => {
                body.insert("data".into(), text.into());
            }
            Err(_) => {
                eprintln!("sockhub publish: the message is not UTF-8 text; use --binary");
                return ExitCode::from(2);
            }
        }
    }
    let body = serde_json::Value::Object(body).to_string();
    let url = format!("{}/api/publish", args.url.trim_end_matches('/'));
    let uri: hyper::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("sockhub publish: bad --url {:?}: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sockhub publish: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::try_from_secs_f64(args.timeout).unwrap_or(Duration::from_secs(10));
    let result = rt.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = hyper::Request::post(uri).header("content-type", "application/json");
        if let Some(key) = &args.api_key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    });
    match result {
        Ok((status, body)) => {
            let text = String::from_utf8_lossy(&body);
            if status.is_success() {
                print!("{text}");
                ExitCode::SUCCESS
            } else {
                eprint!("sockhub publish: HTTP {status}: {text}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("sockhub publish: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
