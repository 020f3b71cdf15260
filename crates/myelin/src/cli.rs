//! Command-line contract. Every server option is a flag, an environment variable and a TOML key;
//! precedence: flag > environment > config file > default.

use std::{io::BufRead, net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use myelin_core::config::Config;
use myelin_service::{
    Services,
    accounts::Requester,
    admin::{NewRegistrationToken, Page, RoomDeletionRequest, RoomListQuery},
    keys::ServerKeys,
};

#[derive(Parser, Debug)]
#[command(name = "myelin", version, about = "Myelin: a Matrix 2.0 homeserver in one binary")]
pub struct Cli {
    #[command(flatten)]
    pub opts: ConfigOpts,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct ConfigOpts {
    /// TOML configuration file (default: <data-dir>/myelin.toml, written on first start).
    #[arg(long, global = true, env = "MYELIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the signing key, config and embedded database.
    #[arg(long, global = true, env = "MYELIN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Listener address of the client-server API.
    #[arg(long, global = true, env = "MYELIN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Server name used in user ids and aliases.
    #[arg(long, global = true, env = "MYELIN_SERVER_NAME")]
    pub server_name: Option<String>,
    /// Database URL: sqlite:PATH (default sqlite:<data-dir>/myelin.db) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "MYELIN_DATABASE")]
    pub database: Option<String>,
    /// Log format: text or json.
    #[arg(long, global = true, env = "MYELIN_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Reverse proxies whose X-Forwarded-For is believed: addresses or CIDR ranges, comma-separated.
    #[arg(long, global = true, env = "MYELIN_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    /// Listener address of the built-in federation TLS listener (e.g. 0.0.0.0:8448).
    #[arg(long, global = true, env = "MYELIN_FEDERATION_LISTEN")]
    pub federation_listen: Option<SocketAddr>,
    /// Application service registration files, comma-separated (appservices).
    #[arg(long, global = true, env = "MYELIN_APPSERVICES", value_delimiter = ',')]
    pub appservices: Option<Vec<String>>,
    /// Serve Prometheus metrics at /metrics on this address (metrics.listen; off by default).
    #[arg(long, global = true, env = "MYELIN_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Check other servers' TLS certificates (federation.verify_certificates).
    #[arg(long = "federation-verify-certificates", hide = true, env = "MYELIN_FEDERATION_VERIFY_CERTIFICATES")]
    pub federation_verify_certificates: Option<bool>,
    /// Address ranges outbound requests may reach although private or loopback (CIDR, comma-separated).
    #[arg(
        long = "federation-ip-range-allowlist",
        hide = true,
        env = "MYELIN_FEDERATION_IP_RANGE_ALLOWLIST",
        value_delimiter = ','
    )]
    pub federation_ip_range_allowlist: Option<Vec<String>>,
    /// The DNS server (IP:PORT) asked for SRV records in server discovery (federation.dns_server).
    #[arg(long = "federation-dns-server", hide = true, env = "MYELIN_FEDERATION_DNS_SERVER")]
    pub federation_dns_server: Option<SocketAddr>,
    /// The LiveKit SFU's WebSocket URL for calls (rtc.livekit.url; needs the key and secret too).
    #[arg(long = "livekit-url", hide = true, env = "MYELIN_LIVEKIT_URL")]
    pub livekit_url: Option<String>,
    /// The LiveKit API key (rtc.livekit.key).
    #[arg(long = "livekit-key", hide = true, env = "MYELIN_LIVEKIT_KEY")]
    pub livekit_key: Option<String>,
    /// The LiveKit API secret (rtc.livekit.secret).
    #[arg(long = "livekit-secret", hide = true, env = "MYELIN_LIVEKIT_SECRET", hide_env_values = true)]
    pub livekit_secret: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the homeserver (the default).
    Serve,
    /// Manage local users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage rooms.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Manage registration tokens (kept in the database; those in the configuration stay).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Database tools.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Copy an SQLite installation's database, consistently, into a new file while the server
    /// keeps running (PostgreSQL installations: pg_dump, see docs/operations.md).
    Backup {
        /// The new file.
        #[arg(long)]
        to: PathBuf,
    },
    /// Copy an SQLite installation into an empty PostgreSQL database, then verify every table by
    /// row count and checksum. Stop the server first: writes after the copy starts are not moved.
    Migrate {
        /// The SQLite database: sqlite:PATH.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: postgres://USER@HOST/DB (must be empty; the schema is created).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user. The password comes from --password or one line of standard input.
    Create {
        name: String,
        #[arg(long)]
        admin: bool,
        #[arg(long, env = "MYELIN_USER_PASSWORD")]
        password: Option<String>,
    },
    /// Set a new password and log out every device.
    ResetPassword {
        name: String,
        #[arg(long, env = "MYELIN_USER_PASSWORD")]
        password: Option<String>,
    },
    /// Deactivate a user: leave all rooms, remove devices, tokens and password.
    Deactivate { name: String },
    /// Send a server notice (a message from the admins) to a user, in their server notices room.
    Notice { name: String, message: String },
    /// List the users, guests included (deactivated ones too with --deactivated).
    List {
        #[arg(long)]
        deactivated: bool,
    },
    /// List a user's sessions (devices): id, kind (the OAuth client, or a password login), name.
    Sessions { name: String },
    /// End one session of a user (its device and tokens go), or every one with --all.
    EndSession {
        name: String,
        device_id: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Lock an account: it cannot sign in and its tokens are refused (M_USER_LOCKED), nothing is deleted.
    Lock { name: String },
    /// Unlock a locked account.
    Unlock { name: String },
}

#[derive(Subcommand, Debug)]
pub enum RoomCommand {
    /// List the rooms: id, joined members, name.
    List {
        /// Only rooms whose name, alias or id contains this.
        #[arg(long)]
        search: Option<String>,
    },
    /// Delete a room: this server's members leave it, its local aliases go, and (unless
    /// --keep-history) everything about it is purged.
    Delete {
        room_id: String,
        /// Nobody of this server may join it again.
        #[arg(long)]
        block: bool,
        /// Keep its events in the database.
        #[arg(long)]
        keep_history: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a registration token (random unless given), printed.
    Create {
        token: Option<String>,
        /// How many registrations it allows (any number if not given).
        #[arg(long)]
        uses: Option<u64>,
    },
    /// List the registration tokens with their uses.
    List,
    /// Delete a registration token.
    Delete { token: String },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Load and validate the configuration, then print it.
    Check,
}

/// Builds the effective configuration.
pub fn load_config(opts: &ConfigOpts) -> anyhow::Result<Config> {
    let data_dir = opts.data_dir.clone();
    let path = match &opts.config {
        Some(p) => Some(p.clone()),
        None => {
            let dir = data_dir.clone().unwrap_or_else(|| Config::default().data_dir);
            let default_path = dir.join("myelin.toml");
            default_path.exists().then_some(default_path)
        }
    };
    let mut config = match &path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str::<Config>(&text).with_context(|| format!("invalid configuration in {}", p.display()))?
        }
        None => Config::default(),
    };
    if let Some(d) = data_dir {
        config.data_dir = d;
    }
    if let Some(l) = opts.listen {
        config.listen = l;
    }
    if let Some(s) = &opts.server_name {
        config.server_name = s.clone();
    }
    if let Some(d) = &opts.database {
        config.database = d.clone();
    }
    if let Some(f) = &opts.log_format {
        config.log_format = f.clone();
    }
    if let Some(proxies) = &opts.trusted_proxies {
        config.trusted_proxies = proxies.iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
    }
    if let Some(l) = opts.federation_listen {
        config.federation.listen = Some(l);
    }
    if let Some(files) = &opts.appservices {
        config.appservices = files.iter().map(|f| f.trim().to_owned()).filter(|f| !f.is_empty()).collect();
    }
    if let Some(l) = opts.metrics_listen {
        config.metrics.listen = Some(l);
    }
    if let Some(verify) = opts.federation_verify_certificates {
        config.federation.verify_certificates = verify;
    }
    if let Some(ranges) = &opts.federation_ip_range_allowlist {
        config.federation.ip_range_allowlist =
            ranges.iter().map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()).collect();
    }
    if let Some(dns) = opts.federation_dns_server {
        config.federation.dns_server = Some(dns);
    }
    apply_livekit_overrides(&mut config, opts)?;
    let mut problems = config.validate();
    if !config.log_filter.is_empty() && tracing_subscriber::EnvFilter::try_new(&config.log_filter).is_err() {
        problems.push(format!(
            "log_filter {:?} is not a valid filter (e.g. \"info,myelin_service=debug\")",
            config.log_filter
        ));
    }
    if !problems.is_empty() {
        bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
    }
    Ok(config)
}

/// The LiveKit settings from flags and environment: each replaces its TOML key; a section that
/// does not exist yet needs all three.
fn apply_livekit_overrides(config: &mut Config, opts: &ConfigOpts) -> anyhow::Result<()> {
    let (url, key, secret) = (&opts.livekit_url, &opts.livekit_key, &opts.livekit_secret);
    if url.is_none() && key.is_none() && secret.is_none() {
        return Ok(());
    }
    match &mut config.rtc.livekit {
        Some(livekit) => {
            if let Some(url) = url {
                livekit.url = url.clone();
            }
            if let Some(key) = key {
                livekit.key = key.clone();
            }
            if let Some(secret) = secret {
                livekit.secret = secret.clone();
            }
        }
        None => match (url, key, secret) {
            (Some(url), Some(key), Some(secret)) => {
                config.rtc.livekit =
                    Some(myelin_core::config::LiveKitConfig::new(url.clone(), key.clone(), secret.clone()));
            }
            _ => bail!("LiveKit needs MYELIN_LIVEKIT_URL, MYELIN_LIVEKIT_KEY and MYELIN_LIVEKIT_SECRET together"),
        },
    }
    Ok(())
}

/// Opens storage and services for a configuration (creating the data directory and key).
pub async fn open_services(config: Config) -> anyhow::Result<Arc<Services>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let config_path = config.data_dir.join("myelin.toml");
    if !config_path.exists() {
        let text = toml::to_string_pretty(&config).context("cannot serialise configuration")?;
        let header = "# Myelin configuration, written on first start with the values then in effect.\n\
                      # Flags and MYELIN_* environment variables override these keys.\n\n";
        std::fs::write(&config_path, format!("{header}{text}"))
            .with_context(|| format!("cannot write {}", config_path.display()))?;
    }
    let keys = ServerKeys::load_or_generate(&config.data_dir, &myelin_core::OsRandom).map_err(anyhow::Error::msg)?;
    let store = myelin_storage::open(&config.database_url()).await.context("cannot open the database")?;
    Services::new(config, store, keys).map_err(anyhow::Error::msg)
}

/// The filter logs start with: `log_filter`, else `RUST_LOG`, else `info`.
fn log_filter(config: &Config) -> tracing_subscriber::EnvFilter {
    if !config.log_filter.is_empty()
        && let Ok(filter) = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
    {
        return filter;
    }
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ruma_state_res=warn"))
}

/// Changes the log filter of a running server (SIGHUP).
pub type LogReload = tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

fn init_logging(config: &Config) -> LogReload {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
    let (filter, reload) = tracing_subscriber::reload::Layer::new(log_filter(config));
    // Colours only for a terminal: logs piped to a file or journald stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    if config.log_format == "json" {
        registry.with(output.json()).init();
    } else {
        registry.with(output).init();
    }
    reload
}

/// What SIGHUP reads again: the configuration's log filter and application service
/// registration files (the rest needs a restart).
pub struct Reloader {
    pub opts: ConfigOpts,
    pub log: LogReload,
}

impl Reloader {
    /// Applies the configuration as it is now; what changed, for the log.
    pub async fn reload(&self, services: &Services) -> anyhow::Result<String> {
        let config = load_config(&self.opts)?;
        let appservices = services
            .reload_appservices(&config.appservices)
            .map_err(|problems| anyhow::anyhow!("application services: {}", problems.join("; ")))?;
        // A service added (or given another bot) has its user from now on.
        services.register_appservice_users().await.map_err(anyhow::Error::msg).context("application service users")?;
        self.log.reload(log_filter(&config)).context("cannot change the log filter")?;
        Ok(format!("log filter {:?}, {appservices} application services", config.log_filter))
    }
}

fn password_arg(password: Option<String>) -> anyhow::Result<String> {
    if let Some(p) = password {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
    let line = line.trim_end_matches(['\r', '\n']).to_owned();
    if line.is_empty() {
        bail!("no password given: pass --password or one line on standard input");
    }
    Ok(line)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(&cli.opts)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let log = init_logging(&config);
            crate::serve::serve(config, Reloader { opts: cli.opts.clone(), log }).await
        }
        Command::Db(DbCommand::Migrate { from, to }) => crate::db::migrate(&from, &to).await,
        Command::Db(DbCommand::Backup { to }) => {
            let database = config.database_url();
            let bytes = myelin_storage::snapshot::sqlite_snapshot(&database, &to).context("backup failed")?;
            println!("backed up {database} to {} ({bytes} bytes)", to.display());
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            let server_name = ruma::ServerName::parse(&config.server_name).context("server_name")?;
            if let Err(problems) = myelin_service::appservices::load_registrations(&config.appservices, &server_name) {
                bail!("invalid configuration:\n  - {}", problems.join("\n  - "));
            }
            println!("{}", toml::to_string_pretty(&config).context("cannot print configuration")?);
            println!("# configuration is valid");
            Ok(())
        }
        Command::Room(cmd) => {
            let services = open_services(config).await?;
            let operator = Requester::operator(services.server_name()).map_err(anyhow::Error::msg)?;
            match cmd {
                RoomCommand::List { search } => {
                    let mut page = Page::default();
                    loop {
                        let query = RoomListQuery { page, search_term: search.clone(), ..RoomListQuery::default() };
                        let list = services.admin_list_rooms(&operator, query).await.map_err(anyhow::Error::msg)?;
                        for room in list["rooms"].as_array().into_iter().flatten() {
                            let name = room["name"].as_str().unwrap_or("");
                            println!("{}\t{}\t{name}", room["room_id"].as_str().unwrap_or(""), room["joined_members"]);
                        }
                        match list["next_batch"].as_u64() {
                            Some(next) => page.from = next,
                            None => break,
                        }
                    }
                }
                RoomCommand::Delete { room_id, block, keep_history } => {
                    let room_id = ruma::OwnedRoomId::try_from(room_id).context("not a room id")?;
                    let request = RoomDeletionRequest { block, purge: !keep_history, new_room_user_id: None };
                    let outcome = services
                        .admin_delete_room_now(&operator, &room_id, request)
                        .await
                        .map_err(anyhow::Error::msg)?;
                    println!("deleted {room_id}: {outcome}");
                }
            }
            services.flush_signals().await;
            Ok(())
        }
        Command::Token(cmd) => {
            let services = open_services(config).await?;
            let operator = Requester::operator(services.server_name()).map_err(anyhow::Error::msg)?;
            match cmd {
                TokenCommand::Create { token, uses } => {
                    let new = NewRegistrationToken { token, uses_allowed: uses, ..NewRegistrationToken::default() };
                    let made =
                        services.admin_create_registration_token(&operator, new).await.map_err(anyhow::Error::msg)?;
                    println!("{}", made["token"].as_str().unwrap_or_default());
                }
                TokenCommand::List => {
                    let tokens =
                        services.admin_registration_tokens(&operator, None).await.map_err(anyhow::Error::msg)?;
                    for t in tokens["registration_tokens"].as_array().into_iter().flatten() {
                        println!(
                            "{}\tuses_allowed={}\tcompleted={}\tpending={}",
                            t["token"].as_str().unwrap_or_default(),
                            t["uses_allowed"],
                            t["completed"],
                            t["pending"]
                        );
                    }
                }
                TokenCommand::Delete { token } => {
                    services.admin_delete_registration_token(&operator, &token).await.map_err(anyhow::Error::msg)?;
                    println!("deleted {token}");
                }
            }
            services.flush_signals().await;
            Ok(())
        }
        Command::User(cmd) => {
            let services = open_services(config).await?;
            match cmd {
                UserCommand::Create { name, admin, password } => {
                    let password = password_arg(password)?;
                    let user_id = services
                        .create_user(&name.to_lowercase(), Some(password), admin)
                        .await
                        .map_err(anyhow::Error::msg)?;
                    println!("created {user_id}{}", if admin { " (admin)" } else { "" });
                }
                UserCommand::ResetPassword { name, password } => {
                    let user_id = services.login_user_id(&name).map_err(anyhow::Error::msg)?;
                    services.existing_user(&user_id).await.map_err(anyhow::Error::msg)?;
                    let password = password_arg(password)?;
                    services.reset_password(&user_id, password).await.map_err(anyhow::Error::msg)?;
                    println!("password of {user_id} reset; all devices logged out");
                }
                UserCommand::Deactivate { name } => {
                    let user_id = services.login_user_id(&name).map_err(anyhow::Error::msg)?;
                    services.deactivate(&user_id).await.map_err(anyhow::Error::msg)?;
                    println!("deactivated {user_id}");
                }
                UserCommand::Notice { name, message } => {
                    let user_id = services.login_user_id(&name).map_err(anyhow::Error::msg)?;
                    let notice = myelin_service::server_notices::Notice::text(&message);
                    let event_id = services.send_server_notice(&user_id, notice).await.map_err(anyhow::Error::msg)?;
                    println!("sent {event_id} to {user_id}");
                }
                UserCommand::List { deactivated } => {
                    for user_id in services.all_user_ids(deactivated).await.map_err(anyhow::Error::msg)? {
                        println!("{user_id}");
                    }
                }
                UserCommand::Sessions { name } => {
                    let user_id = services.login_user_id(&name).map_err(anyhow::Error::msg)?;
                    for (device, oauth) in services.user_sessions(&user_id).await.map_err(anyhow::Error::msg)? {
                        let kind = oauth.map_or_else(|| "password".to_owned(), |o| format!("oauth:{}", o.client_id));
                        println!("{}\t{kind}\t{}", device.device_id, device.display_name.unwrap_or_default());
                    }
                }
                UserCommand::EndSession { name, device_id, all } => {
                    let user_id = services.login_user_id(&name).map_err(anyhow::Error::msg)?;
                    match (device_id, all) {
                        (Some(device_id), false) => {
                            services.end_session(&user_id, &device_id).await.map_err(anyhow::Error::msg)?;
                            println!("ended {device_id} of {user_id}");
                        }
                        (None, true) => {
                            services.delete_all_devices(&user_id, None).await.map_err(anyhow::Error::msg)?;
                            println!("ended every session of {user_id}");
                        }
                        _ => anyhow::bail!("name one DEVICE_ID, or --all"),
                    }
                }
                UserCommand::Lock { name } => {
                    let user_id = services.login_user_id(&name).map_err(anyhow::Error::msg)?;
                    services.set_user_locked(&user_id, true).await.map_err(anyhow::Error::msg)?;
                    println!("locked {user_id}");
                }
                UserCommand::Unlock { name } => {
                    let user_id = services.login_user_id(&name).map_err(anyhow::Error::msg)?;
                    services.set_user_locked(&user_id, false).await.map_err(anyhow::Error::msg)?;
                    println!("unlocked {user_id}");
                }
            }
            services.flush_signals().await;
            Ok(())
        }
    }
}
