//! `delay-proxy`: a TCP proxy that holds every chunk of data for a fixed time in each direction,
//! standing in for a network link (e.g. a database on its own machine) on one host.
//!
//! ```text
//! delay-proxy --listen 127.0.0.1:54330 --to 127.0.0.1:54329 --delay-us 250
//! ```
//!
//! Each direction of each connection has a reader thread that stamps what it reads and a writer
//! thread that sends it on once its time has come (order kept; delays do not add up). Threads and
//! `std::thread::sleep` keep the delay precise to tens of microseconds, which async timers
//! (millisecond resolution) would not.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

fn forward(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        while let Ok((due, chunk)) = rx.recv() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.join();
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| -> Result<String> {
        let at = args.iter().position(|a| a == name).with_context(|| format!("{name} is required"))?;
        args.get(at + 1).cloned().with_context(|| format!("{name} needs a value"))
    };
    let listen = arg("--listen")?;
    let target = arg("--to")?;
    let delay_us: u64 = arg("--delay-us")?.parse().context("--delay-us must be a number of microseconds")?;
    if listen == target {
        bail!("--listen and --to must differ");
    }
    let delay = Duration::from_micros(delay_us);
    let listener = TcpListener::bind(&listen).with_context(|| format!("bind {listen}"))?;
    eprintln!("delay-proxy: {listen} -> {target}, {delay_us} µs each way");
    for client in listener.incoming() {
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(&target) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone()) else { continue };
        std::thread::spawn(move || forward(client_read, server, delay));
        std::thread::spawn(move || forward(server_read, client, delay));
    }
    Ok(())
}
