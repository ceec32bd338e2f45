package protembed;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.neo4j.configuration.GraphDatabaseInternalSettings;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.ConnectorPortRegister;
import org.neo4j.configuration.connectors.ConnectorType;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.graphdb.config.Setting;
import org.neo4j.io.ByteUnit;
import org.neo4j.kernel.internal.GraphDatabaseAPI;

/**
 * A throwaway Neo4j Community server with a Bolt connector on loopback, for tests and the demo.
 *
 * <p>Usage: {@code NEO4J_PASSWORD=... java -jar neo4j-launcher.jar DATA_DIR [PORT]}. The password
 * comes from the environment so that it never shows in {@code ps}. PORT 0 (the default) lets the
 * kernel pick a free port, which avoids the race of choosing one beforehand; the port actually
 * bound is printed as {@code READY bolt://127.0.0.1:PORT} once Bolt accepts connections.
 *
 * <p>System properties: {@code protembed.pagecache.mib} (default 256) and
 * {@code protembed.exitOnStdinEof} (default false; see {@link #exitWhenStdinCloses()}).
 * SIGTERM shuts the databases down cleanly through a shutdown hook.
 */
public final class Neo4jLauncher {
    private Neo4jLauncher() {}

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 1 || args.length > 2) {
            fail("usage: NEO4J_PASSWORD=... java -jar neo4j-launcher.jar DATA_DIR [PORT]");
        }
        String password = System.getenv("NEO4J_PASSWORD");
        if (password == null || password.isEmpty()) {
            fail("NEO4J_PASSWORD must be set to the password wanted for the neo4j user");
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        int port = args.length == 2 ? Integer.parseInt(args[1]) : 0;
        try {
            int boundPort = start(home, port, password);
            System.out.println("READY bolt://127.0.0.1:" + boundPort);
            System.out.flush();
        } catch (RuntimeException | InterruptedException e) {
            // Neo4j's own threads would keep the JVM up without a usable server; exit instead
            // (the shutdown hook, if registered, still closes the databases).
            e.printStackTrace();
            // Last, so that the end of the log the Python side quotes says what went wrong.
            for (Throwable t = e; t != null; t = t.getCause()) {
                System.err.println("FAILED: " + t);
            }
            System.exit(1);
        }
        // The server runs on Neo4j's threads until SIGTERM (or stdin's end) exits the JVM.
        Thread.currentThread().join();
    }

    private static int start(Path home, int port, String password) throws InterruptedException {
        long pageCacheMiB = Long.getLong("protembed.pagecache.mib", 256);
        DatabaseManagementService dbms = withBoltTls(new DatabaseManagementServiceBuilder(home))
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(GraphDatabaseSettings.auth_enabled, true)
                // Tests try wrong passwords on purpose; the default lock-out (3 tries) would then
                // refuse the right password for a while too.
                .setConfig(GraphDatabaseSettings.auth_max_failed_attempts, 0)
                .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(pageCacheMiB))
                // Transaction logs are preallocated at 256 MiB per database by default.
                .setConfig(GraphDatabaseSettings.preallocate_logical_logs, false)
                .setConfig(GraphDatabaseSettings.udc_enabled, false)
                .setConfig(quietShutdown(), noQuietPeriod())
                .build();
        Runtime.getRuntime().addShutdownHook(new Thread(dbms::shutdown, "neo4j-launcher-stop"));
        if (Boolean.getBoolean("protembed.exitOnStdinEof")) {
            exitWhenStdinCloses();
        }
        setPassword(dbms, password);
        int boundPort = boltPort(dbms);
        waitForBolt(boundPort);
        return boundPort;
    }

    /** Bolt otherwise idles 5 s on shutdown waiting for stragglers; nobody is left. */
    @SuppressWarnings("unchecked")
    private static Setting<Object> quietShutdown() {
        return (Setting<Object>) (Setting<?>) GraphDatabaseInternalSettings.netty_server_shutdown_quiet_period;
    }

    /** The setting is an int of seconds in 5.x and a Duration from 2025 on. */
    private static Object noQuietPeriod() {
        return quietShutdown().defaultValue() instanceof Duration ? Duration.ZERO : (Object) 0;
    }

    /**
     * Opt-in Bolt TLS: system property {@code protembed.bolt.tls.dir} names a directory holding
     * {@code private.key} (PKCS#8 PEM) and {@code public.crt}; Bolt then accepts TLS connections
     * only. Without the property the builder is returned unchanged.
     */
    private static DatabaseManagementServiceBuilder withBoltTls(
            DatabaseManagementServiceBuilder builder) {
        String directory = System.getProperty("protembed.bolt.tls.dir");
        if (directory == null || directory.isEmpty()) {
            return builder;
        }
        org.neo4j.configuration.ssl.SslPolicyConfig policy =
                org.neo4j.configuration.ssl.SslPolicyConfig.forScope(
                        org.neo4j.configuration.ssl.SslPolicyScope.BOLT);
        return builder.setConfig(policy.enabled, true)
                .setConfig(policy.base_directory, Path.of(directory).toAbsolutePath())
                .setConfig(policy.client_auth, org.neo4j.configuration.ssl.ClientAuth.NONE)
                .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.REQUIRED);
    }

    /**
     * A new DBMS has user neo4j/neo4j with a forced password change; the embedded API runs with
     * full rights on the system database, so it can set the caller's password directly. On a
     * reused data directory the password may already be the one asked for, which Neo4j refuses
     * to "change"; that case is fine.
     */
    private static void setPassword(DatabaseManagementService dbms, String password) {
        GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        try {
            system.executeTransactionally(
                    "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED", Map.of("pw", password));
        } catch (RuntimeException e) {
            if (!String.valueOf(e.getMessage()).contains("cannot be the same")) {
                throw e;
            }
        }
    }

    private static int boltPort(DatabaseManagementService dbms) {
        GraphDatabaseAPI db =
                (GraphDatabaseAPI) dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
        return db.getDependencyResolver()
                .resolveDependency(ConnectorPortRegister.class)
                .getLocalAddress(ConnectorType.BOLT)
                .getPort();
    }

    private static void waitForBolt(int port) throws InterruptedException {
        long deadline = System.nanoTime() + 60_000_000_000L;
        while (true) {
            try (Socket socket = new Socket()) {
                socket.connect(new InetSocketAddress("127.0.0.1", port), 1000);
                return;
            } catch (IOException e) {
                if (System.nanoTime() > deadline) {
                    throw new IllegalStateException("Bolt did not open on port " + port, e);
                }
                Thread.sleep(100);
            }
        }
    }

    /**
     * The Python side holds our stdin open; when it dies without stopping us (SIGKILL, a test
     * runner's hard timeout) the pipe closes and the server goes too instead of lingering.
     */
    private static void exitWhenStdinCloses() {
        Thread watcher = new Thread(() -> {
            try {
                while (System.in.read() != -1) {
                    // Nothing is ever sent; only the end of the stream matters.
                }
            } catch (IOException e) {
                // A broken stdin means the parent is gone just the same.
            }
            System.exit(0);
        }, "neo4j-launcher-stdin");
        watcher.setDaemon(true);
        watcher.start();
    }

    private static void fail(String message) {
        System.err.println(message);
        System.exit(2);
    }
}
