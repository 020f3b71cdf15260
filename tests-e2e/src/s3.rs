//! moto's S3 server (PyPI `moto[server]`), started for a test as the S3-compatible store the
//! blob store writes to. The venv comes from `MYELIN_TEST_TOOLS_VENV` (set by
//! `scripts/test-all.sh`), else `scripts/test-tools-venv.sh` installs it.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result, bail};

use crate::free_port;

pub(crate) fn tools_venv() -> Result<PathBuf> {
    if let Some(venv) = std::env::var_os("MYELIN_TEST_TOOLS_VENV") {
        return Ok(PathBuf::from(venv));
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/test-tools-venv.sh");
    let out = Command::new("bash").arg(script).output().context("run scripts/test-tools-venv.sh")?;
    if !out.status.success() {
        bail!("scripts/test-tools-venv.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(PathBuf::from(stdout.lines().last().context("test-tools-venv.sh printed nothing")?.trim()))
}

/// A running moto S3 server on 127.0.0.1; stopped when dropped.
pub struct S3Server {
    child: tokio::process::Child,
    venv: PathBuf,
    pub url: String,
}

impl S3Server {
    /// Starts moto and creates `bucket` in it.
    pub async fn start(bucket: &str) -> Result<Self> {
        let venv = tools_venv()?;
        let port = free_port()?;
        let child = tokio::process::Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start moto_server")?;
        let server = Self { child, venv, url: format!("http://127.0.0.1:{port}") };
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if http.get(format!("{}/moto-api/", server.url)).send().await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("moto_server did not answer on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let created = http.put(format!("{}/{bucket}", server.url)).send().await?;
        if !created.status().is_success() {
            bail!("creating bucket {bucket}: {}", created.status());
        }
        Ok(server)
    }

    /// An object's bytes as the store holds them (`None` if it has no such object), read with
    /// boto3, AWS's own client, so the test does not check Myelin's S3 code with itself.
    pub async fn object(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let script = r#"
import sys, boto3, botocore
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
try:
    body = s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])["Body"].read()
except botocore.exceptions.ClientError as e:
    if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
        sys.exit(3)
    raise
sys.stdout.buffer.write(body)
"#;
        let out = tokio::process::Command::new(self.venv.join("bin/python"))
            .args(["-c", script, &self.url, bucket, key])
            .output()
            .await
            .context("run boto3")?;
        match out.status.code() {
            Some(0) => Ok(Some(out.stdout)),
            Some(3) => Ok(None),
            _ => bail!("boto3 get_object failed: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// The `[media.s3]` section pointing a Myelin at this store.
    pub fn config(&self, bucket: &str) -> String {
        format!(
            "[media.s3]\nendpoint = \"{}\"\nbucket = \"{bucket}\"\naccess_key = \"testing\"\nsecret_key = \"testing\"\n",
            self.url
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
