// mpiray._serve_proxy: the Python binding of libs/serve's HTTP proxy. The router (Python
// threads of mpiray.serve) takes requests with next() and answers with respond() or a chunked
// stream; the GIL is released while it waits and while the proxy works.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "mpiray/serve/proxy.h"

namespace py = pybind11;
namespace sv = mpiray::serve;

namespace {

std::string Text(py::handle h) {
  if (py::isinstance<py::bytes>(h)) return h.cast<std::string>();
  if (py::isinstance<py::str>(h)) return h.cast<std::string>();
  throw py::type_error("header names and values must be str or bytes");
}

sv::Headers ToHeaders(const py::iterable& items) {
  sv::Headers out;
  for (auto item : items) {
    auto pair = py::reinterpret_borrow<py::sequence>(item);
    if (pair.size() != 2) throw py::value_error("a header must be a (name, value) pair");
    out.emplace_back(Text(pair[0]), Text(pair[1]));
  }
  return out;
}

std::chrono::milliseconds Ms(double seconds) {
  if (!(seconds > 0)) throw py::value_error("timeouts must be positive numbers of seconds");
  return std::chrono::milliseconds(static_cast<long long>(seconds * 1000.0));
}

std::unique_ptr<sv::Proxy> Start(const std::string& host, int port, int threads,
                                 std::size_t max_body_bytes, double header_timeout_s,
                                 double body_timeout_s, double keep_alive_timeout_s,
                                 double write_timeout_s, std::size_t max_connections,
                                 const std::string& token, const std::string& admin_token) {
  if (port < 0 || port > 65535) throw py::value_error("port must be between 0 and 65535");
  sv::ProxyOptions o;
  o.host = host;
  o.port = static_cast<std::uint16_t>(port);
  o.threads = threads;
  o.max_body_bytes = max_body_bytes;
  o.header_timeout = Ms(header_timeout_s);
  o.body_timeout = Ms(body_timeout_s);
  o.keep_alive_timeout = Ms(keep_alive_timeout_s);
  o.write_timeout = Ms(write_timeout_s);
  o.max_connections = max_connections;
  o.token = token;
  o.admin_token = admin_token;
  auto r = sv::Proxy::Start(o);
  if (!r.ok()) {
    if (r.status().code() == mpiray::StatusCode::kInvalidArgument)
      throw py::value_error(r.status().message());
    PyErr_SetString(PyExc_OSError, r.status().message().c_str());
    throw py::error_already_set();
  }
  return std::move(r).value();
}

py::object ToPython(sv::Request&& r) {
  py::list headers(r.headers.size());
  for (std::size_t i = 0; i < r.headers.size(); ++i)
    headers[i] = py::make_tuple(py::bytes(r.headers[i].first), py::bytes(r.headers[i].second));
  return py::make_tuple(r.id, r.app, r.route_prefix, r.method, r.path, py::bytes(r.query),
                        headers, py::bytes(r.body), py::make_tuple(r.client_host, r.client_port),
                        r.http_minor == 0 ? "1.0" : "1.1", r.admin);
}

// The streaming half of Proxy: chunked responses.
void DefStreams(py::class_<sv::Proxy>& proxy) {
  proxy
      .def("start_stream",
           [](sv::Proxy& p, std::uint64_t id, int status, const py::iterable& headers) {
             sv::Headers h = ToHeaders(headers);
             py::gil_scoped_release nogil;
             return p.StartStream(id, status, std::move(h));
           })
      .def("send_chunk",
           [](sv::Proxy& p, std::uint64_t id, const py::bytes& data, std::size_t max_buffered) {
             std::string d = data;
             py::gil_scoped_release nogil;
             return p.SendChunk(id, std::move(d), max_buffered);
           },
           py::arg("id"), py::arg("data"), py::arg("max_buffered") = std::size_t(4) << 20)
      .def("end_stream",
           [](sv::Proxy& p, std::uint64_t id) {
             py::gil_scoped_release nogil;
             return p.EndStream(id);
           })
      .def("abort_stream",
           [](sv::Proxy& p, std::uint64_t id) {
             py::gil_scoped_release nogil;
             return p.AbortStream(id);
           },
           "Resets the connection of request id after what was sent (a cut stream)");
}

}  // namespace

PYBIND11_MODULE(_serve_proxy, m) {
  m.doc() = "The native HTTP/1.1 proxy of mpiray.serve (libs/serve, Boost.Beast).";
  py::class_<sv::Proxy> proxy(m, "Proxy");
  DefStreams(proxy);
  proxy
      .def(py::init(&Start), py::arg("host") = "127.0.0.1", py::arg("port") = 8000,
           py::arg("threads") = 2, py::arg("max_body_bytes") = std::size_t(64) << 20,
           py::arg("header_timeout_s") = 10.0, py::arg("body_timeout_s") = 30.0,
           py::arg("keep_alive_timeout_s") = 90.0, py::arg("write_timeout_s") = 30.0,
           py::arg("max_connections") = 4096, py::arg("token") = "",
           py::arg("admin_token") = "", "Binds and starts the proxy (OSError names the address)")
      .def_property_readonly("port", &sv::Proxy::port)
      .def("set_routes",
           [](sv::Proxy& p, const std::vector<std::pair<std::string, std::string>>& routes) {
             std::vector<sv::Route> rs;
             for (const auto& [prefix, app] : routes) rs.push_back({prefix, app});
             p.SetRoutes(std::move(rs));
           })
      .def("routes",
           [](const sv::Proxy& p) {
             std::vector<std::pair<std::string, std::string>> out;
             const sv::RouteTable table = p.routes();
             for (const auto& r : table.routes()) out.emplace_back(r.prefix, r.app);
             return out;
           })
      .def("next",
           [](sv::Proxy& p, double timeout_s) -> py::object {
             std::optional<sv::Request> r;
             {
               py::gil_scoped_release nogil;
               r = p.Next(std::chrono::milliseconds(static_cast<long long>(timeout_s * 1000)));
             }
             if (!r) return py::none();
             return ToPython(std::move(*r));
           },
           py::arg("timeout_s"),
           "(id, app, route_prefix, method, path, query, headers, body, (host, port), "
           "http_version, admin) of the next request, or None after timeout_s")
      .def("next_batch",
           [](sv::Proxy& p, std::size_t max, double timeout_s) -> py::list {
             std::vector<sv::Request> rs;
             {
               py::gil_scoped_release nogil;
               rs = p.NextBatch(max, std::chrono::milliseconds(
                                         static_cast<long long>(timeout_s * 1000)));
             }
             py::list out(rs.size());
             for (std::size_t i = 0; i < rs.size(); ++i) out[i] = ToPython(std::move(rs[i]));
             return out;
           },
           py::arg("max"), py::arg("timeout_s"),
           "Every queued request (as next() gives them), up to max, waiting up to timeout_s "
           "for the first; [] after the timeout")
      .def("waiting", &sv::Proxy::waiting)
      .def("respond",
           [](sv::Proxy& p, std::uint64_t id, int status, const py::iterable& headers,
              const py::bytes& body) {
             sv::Headers h = ToHeaders(headers);
             std::string b = body;
             py::gil_scoped_release nogil;
             return p.Respond(id, status, std::move(h), std::move(b));
           })
      .def("is_open", &sv::Proxy::IsOpen)
      .def("stats",
           [](const sv::Proxy& p) {
             auto s = p.stats();
             py::dict d;
             d["connections"] = s.connections;
             d["open_connections"] = s.open_connections;
             d["requests"] = s.requests;
             d["routed"] = s.routed;
             d["rejected"] = s.rejected;
             d["timeouts"] = s.timeouts;
             d["queued"] = s.queued;
             return d;
           })
      .def("stop", [](sv::Proxy& p) {
        py::gil_scoped_release nogil;
        p.Stop();
      });
}
