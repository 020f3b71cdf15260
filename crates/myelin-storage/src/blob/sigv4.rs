//! AWS Signature Version 4 for the S3 requests of the blob store: path-style requests, no query
//! string, the payload hash signed.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// SHA-256 of the empty payload.
pub const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a request is signed over.
pub struct Request<'a> {
    pub method: &'a str,
    /// `host[:port]` as sent in the Host header.
    pub host: &'a str,
    /// The absolute path, already URI-encoded.
    pub path: &'a str,
    pub payload_sha256: &'a str,
    /// Seconds since the epoch.
    pub unix_time: u64,
}

/// Who signs, and where.
pub struct Credentials<'a> {
    pub access_key: &'a str,
    pub secret_key: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// The headers to send: `x-amz-date`, `x-amz-content-sha256` and `authorization`.
pub fn sign(request: &Request<'_>, credentials: &Credentials<'_>) -> [(&'static str, String); 3] {
    let (date, amz_date) = amz_dates(request.unix_time);
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical_request = format!(
        "{}\n{}\n\nhost:{}\nx-amz-content-sha256:{}\nx-amz-date:{amz_date}\n\n{signed_headers}\n{}",
        request.method, request.path, request.host, request.payload_sha256, request.payload_sha256
    );
    let scope = format!("{date}/{}/{}/aws4_request", credentials.region, credentials.service);
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));
    let mut key = hmac(format!("AWS4{}", credentials.secret_key).as_bytes(), date.as_bytes());
    for part in [credentials.region, credentials.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key
    );
    [
        ("x-amz-date", amz_date),
        ("x-amz-content-sha256", request.payload_sha256.to_owned()),
        ("authorization", authorization),
    ]
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(YYYYMMDD, YYYYMMDDTHHMMSSZ)` in UTC.
fn amz_dates(unix_time: u64) -> (String, String) {
    let t = myelin_core::clock::UtcDateTime::from_unix_secs(unix_time);
    let date = format!("{:04}{:02}{:02}", t.year, t.month, t.day);
    let time = format!("{:02}{:02}{:02}", t.hour, t.minute, t.second);
    (date.clone(), format!("{date}T{time}Z"))
}

#[cfg(test)]
mod tests {
    use super::{Credentials, Request, amz_dates, sign};

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(amz_dates(0), ("19700101".into(), "19700101T000000Z".into()));
        assert_eq!(amz_dates(1_440_938_160), ("20150830".into(), "20150830T123600Z".into()));
        assert_eq!(amz_dates(951_782_400), ("20000229".into(), "20000229T000000Z".into()), "a leap day");
        assert_eq!(amz_dates(4_102_444_799), ("20991231".into(), "20991231T235959Z".into()));
    }

    /// The signature botocore's SigV4Auth computes for the same request (AWS's example keys).
    #[test]
    fn signatures_match_botocores() {
        let sha = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        let headers = sign(
            &Request {
                method: "PUT",
                host: "127.0.0.1:9000",
                path: &format!("/media-bucket/{sha}"),
                payload_sha256: sha,
                unix_time: 1_440_938_160,
            },
            &Credentials {
                access_key: "AKIDEXAMPLE",
                secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                region: "us-east-1",
                service: "s3",
            },
        );
        assert_eq!(headers[0], ("x-amz-date", "20150830T123600Z".to_owned()));
        assert_eq!(
            headers[2].1,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
             Signature=98ebecbf45e30d459ebed4ef96e2cfd2528a11e9d5d6ddd221b497f710361894"
        );
    }
}
