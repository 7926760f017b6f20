//! Credentials resolved once, not per request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::Error;

/// Credentials resolved once and again only shortly before they expire, so that the provider chain
/// (files, IMDS, STS, SSO) is not asked per request.
///
/// Handed out behind an `Arc`: cloning `Credentials` itself copies its map of properties (several
/// allocations), which every signed request would pay.
#[derive(Debug)]
pub struct CredentialsCache {
    provider: SharedCredentialsProvider,
    current: Mutex<Option<Arc<Credentials>>>,
}

/// Credentials expiring sooner than this are renewed (the SDK's identity cache uses the same
/// buffer).
const EXPIRY_BUFFER: Duration = Duration::from_secs(5 * 60);

impl CredentialsCache {
    pub fn new(provider: SharedCredentialsProvider) -> CredentialsCache {
        CredentialsCache {
            provider,
            current: Mutex::new(None),
        }
    }

    /// Valid credentials: the cached ones, or fresh ones from the provider when there are none yet
    /// or they expire within five minutes.
    pub async fn get(&self) -> Result<Arc<Credentials>, Error> {
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|expiry| expiry > SystemTime::now() + EXPIRY_BUFFER)
        };
        if let Some(credentials) = self.lock().as_ref().filter(|c| fresh(c)) {
            return Ok(Arc::clone(credentials));
        }
        // Several requests may renew at once at expiry; they all get valid credentials.
        let credentials = Arc::new(
            self.provider
                .provide_credentials()
                .await
                .map_err(|e| Error::Credentials(crate::error_chain(&e)))?,
        );
        *self.lock() = Some(Arc::clone(&credentials));
        Ok(credentials)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Credentials>>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::provider::future::ProvideCredentials as Future;

    use super::*;

    /// Counts how often it is asked; its credentials expire `lifetime` from now.
    #[derive(Debug)]
    struct Counting {
        asked: Arc<AtomicUsize>,
        lifetime: Duration,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> Future<'a>
        where
            Self: 'a,
        {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Future::ready(Ok(Credentials::new(
                "AKID",
                "SECRET",
                None,
                Some(SystemTime::now() + self.lifetime),
                "test",
            )))
        }
    }

    fn cache(lifetime: Duration) -> (CredentialsCache, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let provider = Counting {
            asked: Arc::clone(&asked),
            lifetime,
        };
        (
            CredentialsCache::new(SharedCredentialsProvider::new(provider)),
            asked,
        )
    }

    #[tokio::test]
    async fn long_lived_credentials_are_asked_for_once() {
        let (cache, asked) = cache(Duration::from_secs(3600));
        let first = cache.get().await.unwrap();
        for _ in 0..3 {
            let again = cache.get().await.unwrap();
            assert_eq!(again.access_key_id(), "AKID");
            assert!(Arc::ptr_eq(&first, &again), "the cached credentials themselves, not a copy");
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_about_to_expire_are_renewed() {
        let (cache, asked) = cache(EXPIRY_BUFFER - Duration::from_secs(1));
        cache.get().await.unwrap();
        cache.get().await.unwrap();
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }
}
