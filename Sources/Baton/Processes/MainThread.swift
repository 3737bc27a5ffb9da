import Glibc
import NIOCore

/// Runs work on the main thread while it waits for the supervisor's outcome.
///
/// Workers are started here because a worker's parent-death signal
/// (`PR_SET_PDEATHSIG`) fires when the *thread* that forked it exits, not the process.
/// The main thread is the one thread that lives as long as Baton, and the one that
/// survives an upgrade in place: `execve` from it ends every other thread, so a worker
/// forked by the event loop's thread would get its drain signal at every upgrade.
final class MainThread: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var jobs: [Job] = []
    /// Once the main thread no longer serves, work runs on the thread that asks.
    private var closed = false

    private final class Job: @unchecked Sendable {
        let body: () -> Void
        var done = false
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
    }

    /// Runs `body` on the main thread and returns what it returned or threw; the
    /// calling thread waits meanwhile.
    func perform<T, Failure: Error>(_ body: @escaping () throws(Failure) -> T) throws(Failure) -> T {
        var result: Result<T, Failure>?
        let job = Job { result = Result { () throws(Failure) in try body() } }
        pthread_mutex_lock(&mutex)
        if closed {
            pthread_mutex_unlock(&mutex)
            job.body()
        } else {
            jobs.append(job)
            pthread_cond_broadcast(&condition)
            while !job.done {
                pthread_cond_wait(&condition, &mutex)
            }
            pthread_mutex_unlock(&mutex)
        }
        return try result!.get()
    }

    /// Called on the main thread: runs the work others ask for until `future` completes,
    /// and returns its value.
    func serve<T: Sendable>(until future: EventLoopFuture<T>) throws -> T {
        let completed = Job {}
        future.whenComplete { [self] _ in
            pthread_mutex_lock(&mutex)
            completed.done = true
            pthread_cond_broadcast(&condition)
            pthread_mutex_unlock(&mutex)
        }
        pthread_mutex_lock(&mutex)
        while true {
            while jobs.isEmpty && !completed.done {
                pthread_cond_wait(&condition, &mutex)
            }
            let taken = jobs
            jobs.removeAll()
            if taken.isEmpty && completed.done { break }
            pthread_mutex_unlock(&mutex)
            taken.forEach { $0.body() }
            pthread_mutex_lock(&mutex)
            taken.forEach { $0.done = true }
            pthread_cond_broadcast(&condition)
        }
        pthread_mutex_unlock(&mutex)
        return try future.wait()
    }

    /// Called on the main thread when it stops serving for good; runs what is still asked.
    func close() {
        pthread_mutex_lock(&mutex)
        closed = true
        let taken = jobs
        jobs.removeAll()
        pthread_mutex_unlock(&mutex)
        taken.forEach { $0.body() }
        pthread_mutex_lock(&mutex)
        taken.forEach { $0.done = true }
        pthread_cond_broadcast(&condition)
        pthread_mutex_unlock(&mutex)
    }
}
