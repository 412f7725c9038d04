//! The shell's connection: a blocking TCP stream, upgraded in place to TLS by the `tls`
//! command. Synchronous on purpose: only kith-node knows tokio.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rustls::{ClientConnection, StreamOwned};

/// The socket, plain or TLS.
pub enum Conn {
    /// Before (or without) `tls`.
    Plain(TcpStream),
    /// After `tls`: the same socket under TLS.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    /// Connects to `target` (HOST:PORT), trying each address in turn for at most `timeout`
    /// each. Writes time out after `write_timeout`.
    pub fn connect(target: &str, timeout: Duration, write_timeout: Duration) -> Result<Conn> {
        let fail = |e: &dyn std::fmt::Display| anyhow!("cannot connect to {target}: {e}");
        let addrs: Vec<_> = target.to_socket_addrs().map_err(|e| fail(&e))?.collect();
        let mut last = None;
        for addr in &addrs {
            match TcpStream::connect_timeout(addr, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(|e| fail(&e))?;
                    stream
                        .set_write_timeout(Some(write_timeout))
                        .map_err(|e| fail(&e))?;
                    return Ok(Conn::Plain(stream));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => fail(&e),
            None => fail(&"no address found"),
        })
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock,
        }
    }

    /// How long the next read may block (at least a millisecond).
    pub fn set_read_timeout(&self, wait: Duration) -> io::Result<()> {
        self.tcp()
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
    }

    /// Runs the TLS handshake on the socket (the `tls` line already sent in the clear). The
    /// peer's certificate is the node's self-signed one: the session is encrypted but the
    /// peer is not authenticated (see `kith_node::tls::client_config`).
    pub fn start_tls(self, timeout: Duration) -> Result<Conn> {
        let Conn::Plain(mut sock) = self else {
            return Err(anyhow!("TLS is already on"));
        };
        let mut tls = ClientConnection::new(
            kith_node::tls::client_config(),
            kith_node::tls::server_name(),
        )
        .context("TLS setup")?;
        sock.set_read_timeout(Some(timeout))
            .context("TLS handshake")?;
        while tls.is_handshaking() {
            tls.complete_io(&mut sock).context("TLS handshake")?;
        }
        Ok(Conn::Tls(Box::new(StreamOwned::new(tls, sock))))
    }

    /// Ends the connection: TLS close_notify if TLS is on, then a TCP shutdown. Best effort.
    pub fn close(mut self) {
        if let Conn::Tls(s) = &mut self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.tcp().shutdown(Shutdown::Both);
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}
