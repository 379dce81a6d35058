#include <catch2/catch.hpp>

#include "mpiray/serve/routes.h"

using mpiray::serve::Route;
using mpiray::serve::RouteTable;

TEST_CASE("the longest route prefix wins on path-segment boundaries", "[serve][routes]") {
  RouteTable t({{"/", "root"}, {"/api", "api"}, {"/api/v2/", "v2"}});
  CHECK(t.Match("/")->app == "root");
  CHECK(t.Match("/x")->app == "root");
  CHECK(t.Match("/api")->app == "api");
  CHECK(t.Match("/api/")->app == "api");
  CHECK(t.Match("/api/items?x=1")->app == "api");
  CHECK(t.Match("/apix")->app == "root");
  CHECK(t.Match("/api/v2")->app == "v2");
  CHECK(t.Match("/api/v2/m")->app == "v2");
  CHECK(t.Match("/api/v2?q=/api")->app == "v2");
  CHECK(t.Match("/api/v2/m")->prefix == "/api/v2");
}

TEST_CASE("without a root route unknown paths match nothing", "[serve][routes]") {
  RouteTable t(std::vector<Route>{{"/a", "a"}});
  CHECK_FALSE(t.Match("/").has_value());
  CHECK_FALSE(t.Match("/b").has_value());
  CHECK_FALSE(t.Match("/ab").has_value());
  CHECK(t.Match("/a/b")->app == "a");
  CHECK_FALSE(RouteTable().Match("/").has_value());
}

TEST_CASE("the route table as JSON with quotes escaped", "[serve][routes]") {
  RouteTable t({{"/", "r"}, {"/q", "a\"b"}});
  CHECK(t.ToJson() == R"({"/q":"a\"b","/":"r"})");
  CHECK(RouteTable().ToJson() == "{}");
}
