# The Debian package `mailpush` (cpack -G DEB in a build folder; scripts/package.sh does it all):
# both binaries, the systemd unit, the production region files as conffiles, ops/ and the key
# scripts. apns-sim, tests and benchmarks have no install() rule, so they are not in it.

# mailpushd and mailpushctl: install() rules in src/app/CMakeLists.txt (/usr/bin).
install(FILES ops/systemd/mailpushd@.service DESTINATION /lib/systemd/system)
install(FILES regions/us-east-1.json regions/eu-west-1.json regions/ap-southeast-1.json
        DESTINATION /etc/mailpush/regions)
install(PROGRAMS ops/backup/mailpush-backup ops/backup/mailpush-restore DESTINATION sbin)
install(FILES ops/runbook.md DESTINATION share/mailpush/ops)
install(FILES ops/prometheus/alerts.yml DESTINATION share/mailpush/ops/prometheus)
install(FILES ops/grafana/mailpush.json DESTINATION share/mailpush/ops/grafana)
install(FILES ops/network/us-east-1.md ops/network/eu-west-1.md ops/network/ap-southeast-1.md
        DESTINATION share/mailpush/ops/network)
install(PROGRAMS scripts/make-kek.sh scripts/make-region-secret.sh
        DESTINATION share/mailpush/scripts)

# dpkg keeps an operator's edits of these on upgrade (and asks when both sides changed).
set(MAILPUSH_CONFFILES "")
foreach(region us-east-1 eu-west-1 ap-southeast-1)
  string(APPEND MAILPUSH_CONFFILES "/etc/mailpush/regions/${region}.json\n")
endforeach()
file(WRITE "${PROJECT_BINARY_DIR}/debian/conffiles" "${MAILPUSH_CONFFILES}")
foreach(script postinst prerm postrm)
  configure_file("${PROJECT_SOURCE_DIR}/cmake/debian/${script}" "${PROJECT_BINARY_DIR}/debian/${script}"
                 COPYONLY)
endforeach()

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "mailpush")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "mailpush")
set(CPACK_PACKAGE_CONTACT "mailpush dev <dev@mailpush.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "regional relay from Exchange EWS push callbacks to APNs badges")
set(CPACK_PACKAGE_DESCRIPTION
    "mailpushd receives Exchange EWS SendNotification callbacks on a regional HTTPS listener and
sends contentless APNs badge notifications with each customer's push certificate; mailpushctl
operates a region. Includes the systemd unit mailpushd@.service (one instance per region
file in /etc/mailpush/regions), Prometheus alerts, a Grafana dashboard, the runbook and
network pages in /usr/share/mailpush/ops, and mailpush-backup / mailpush-restore.")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# Shared libraries are found by dpkg-shlibdeps; adduser is for postinst's system user.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "mariadb-client, mariadb-backup, openssl")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "mariadb-server, galera-4, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_BINARY_DIR}/debian/conffiles;${PROJECT_BINARY_DIR}/debian/postinst;${PROJECT_BINARY_DIR}/debian/prerm;${PROJECT_BINARY_DIR}/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
